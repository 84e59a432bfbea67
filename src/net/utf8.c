/* utf8.c -- strict UTF-8 validation for WebSocket text messages and close
 * reasons (RFC 6455 8.1 requires failing the connection with 1007 on invalid
 * UTF-8; RFC 3629 defines what "valid" means). */
#include "net/ws.h"

/* Decodes by hand rather than with mbrtowc(): the C library's answer depends
 * on the locale, and glibc accepts things RFC 3629 forbids in some locales.
 * Rejected: stray continuation bytes, lead bytes 0xC0/0xC1/0xF5..0xFF,
 * overlong forms, UTF-16 surrogates (U+D800..U+DFFF), anything above
 * U+10FFFF, and a sequence cut off by the end of the buffer. */
bool ws_utf8_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            extra = 1; cp = c & 0x1Fu; min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2; cp = c & 0x0Fu; min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3; cp = c & 0x07u; min = 0x10000;
        } else {
            return false; /* continuation byte where a lead byte belongs, or 0xF8.. */
        }
        if (len - i - 1 < extra)
            return false; /* truncated sequence */
        for (size_t k = 1; k <= extra; k++) {
            uint8_t b = s[i + k];
            if ((b & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (b & 0x3Fu);
        }
        /* the minimum per length catches overlongs (and with it 0xC0/0xC1) */
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += extra + 1;
    }
    return true;
}
