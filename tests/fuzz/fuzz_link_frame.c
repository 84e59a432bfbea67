/* fuzz_link_frame.c -- the node link's frame reader (src/cluster/link_frame.c)
 * on arbitrary bytes, as a peer node's stream reaches it: split frames off
 * the front until the stream ends or a length is refused, decode each
 * payload, and check that a frame that decodes encodes back to exactly the
 * bytes it came from (the layout is canonical). The seeds in
 * tests/fuzz/seeds/fuzz_link_frame are one stream of every type, written by
 * hand (see tests/unit/test_link_frame.c for the layouts). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/link_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t off = 0;
    for (;;) {
        size_t payload_len = 0;
        int r = link_frame_split(data + off, size - off, &payload_len);
        if (r <= 0) break;
        const uint8_t *payload = data + off + LINK_LENGTH_BYTES;
        if (payload_len > size - off - LINK_LENGTH_BYTES) abort();   /* split overran the input */
        link_frame f;
        if (link_frame_decode(payload, payload_len, &f) == 0) {
            size_t n = link_frame_size(&f);
            if (n != LINK_LENGTH_BYTES + payload_len) abort();
            uint8_t *again = malloc(n);
            if (!again) abort();
            if (link_frame_encode(&f, again, n) != n) abort();
            if (memcmp(again, data + off, n) != 0) abort();
            free(again);
        }
        off += LINK_LENGTH_BYTES + payload_len;
    }
    return 0;
}
