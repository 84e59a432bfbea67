/* json.c -- the JSON lines parley-cli prints: one object per event (sync,
 * history) or per conversation. Strings are escaped per RFC 8259; message
 * text that is not valid UTF-8 is printed as body_b64 instead, so no byte of
 * a message is lost or altered in the output. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "net/ws.h"

const char *json_type_name(int type) {
    switch (type) {
    case PARLEY__V1__MESSAGE_TYPE__TEXT: return "text";
    case PARLEY__V1__MESSAGE_TYPE__MEDIA: return "media";
    case PARLEY__V1__MESSAGE_TYPE__REACTION: return "reaction";
    case PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP: return "membership";
    default: return "unknown";
    }
}

const char *json_action_name(int action) {
    switch (action) {
    case PARLEY__V1__MEMBERSHIP__ACTION__CREATED: return "created";
    case PARLEY__V1__MEMBERSHIP__ACTION__ADDED: return "added";
    case PARLEY__V1__MEMBERSHIP__ACTION__REMOVED: return "removed";
    case PARLEY__V1__MEMBERSHIP__ACTION__LEFT: return "left";
    case PARLEY__V1__MEMBERSHIP__ACTION__RENAMED: return "renamed";
    default: return "unknown";
    }
}

const char *json_kind_name(int kind) {
    switch (kind) {
    case PARLEY__V1__CONVERSATION_KIND__DIRECT: return "direct";
    case PARLEY__V1__CONVERSATION_KIND__GROUP: return "group";
    default: return "unknown";
    }
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if s[0] does not
 * start one. Strict: no overlongs, surrogates or code points past U+10FFFF. */
static size_t utf8_seq_len(const uint8_t *s, size_t left) {
    size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3
                               : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || n > left) return 0;
    return ws_utf8_valid(s, n) ? n : 0;
}

void json_print_string(FILE *out, const char *str, size_t len) {
    const uint8_t *s = (const uint8_t *)str;
    fputc('"', out);
    size_t i = 0;
    while (i < len) {
        uint8_t ch = s[i];
        if (ch >= 0x80) {
            size_t n = utf8_seq_len(s + i, len - i);
            if (n == 0) {
                fputs("\\ufffd", out);
                i++;
            } else {
                fwrite(s + i, 1, n, out);
                i += n;
            }
            continue;
        }
        switch (ch) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        default:
            if (ch < 0x20 || ch == 0x7f)
                fprintf(out, "\\u%04x", ch);
            else
                fputc(ch, out);
        }
        i++;
    }
    fputc('"', out);
}

static void print_b64(FILE *out, const uint8_t *data, size_t len) {
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *b = malloc(cap);
    if (!b) {
        fputs("null", out);
        return;
    }
    sodium_bin2base64(b, cap, data, len, sodium_base64_VARIANT_ORIGINAL);
    fprintf(out, "\"%s\"", b);
    free(b);
}

static void print_u64_array(FILE *out, const uint64_t *v, size_t n) {
    fputc('[', out);
    for (size_t i = 0; i < n; i++) fprintf(out, "%s%" PRIu64, i ? "," : "", v[i]);
    fputc(']', out);
}

static void print_message(FILE *out, uint64_t user_seq, const Parley__V1__Message *m, const char *undecryptable) {
    fprintf(out, "{\"conv\":%" PRIu64 ",\"seq\":%" PRIu64, m->conversation_id, m->seq);
    if (user_seq) fprintf(out, ",\"user_seq\":%" PRIu64, user_seq);
    fprintf(out, ",\"sender\":%" PRIu64 ",\"sender_device\":%" PRIu32 ",\"type\":\"%s\"",
            m->sender_user_id, m->sender_device_id, json_type_name((int)m->type));
    const uint8_t *body = m->body.data;
    size_t blen = m->body.len;
    if (undecryptable) {
        fputs(",\"undecryptable\":", out);
        json_print_string(out, undecryptable, strlen(undecryptable));
    } else if (m->type == PARLEY__V1__MESSAGE_TYPE__TEXT && (blen == 0 || ws_utf8_valid(body, blen))) {
        fputs(",\"text\":", out);
        json_print_string(out, (const char *)body, blen);
    } else if (m->type != PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP || blen > 0) {
        fputs(",\"body_b64\":", out);
        print_b64(out, body, blen);
    }
    switch (m->type) {
    case PARLEY__V1__MESSAGE_TYPE__MEDIA:
        fputs(",\"mime\":", out);
        json_print_string(out, m->mime_type ? m->mime_type : "",
                          m->mime_type ? strlen(m->mime_type) : 0);
        fprintf(out, ",\"size\":%" PRIu64, m->size);
        break;
    case PARLEY__V1__MESSAGE_TYPE__REACTION:
        fprintf(out, ",\"ref_seq\":%" PRIu64, m->ref_seq);
        break;
    case PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP: {
        const Parley__V1__Membership *ms = m->membership;
        fprintf(out, ",\"action\":\"%s\",\"users\":",
                json_action_name(ms ? (int)ms->action : 0));
        print_u64_array(out, ms ? ms->user_ids : NULL, ms ? ms->n_user_ids : 0);
        if (ms && ms->action == PARLEY__V1__MEMBERSHIP__ACTION__CREATED) {
            fprintf(out, ",\"kind\":\"%s\",\"name\":", json_kind_name((int)ms->kind));
            json_print_string(out, ms->name ? ms->name : "", ms->name ? strlen(ms->name) : 0);
        }
        break;
    }
    default:
        break;
    }
    fprintf(out, ",\"ts\":%" PRIu64 "}\n", m->server_ts);
}

void json_print_message(FILE *out, uint64_t user_seq, const Parley__V1__Message *m) {
    print_message(out, user_seq, m, NULL);
}

void json_print_undecryptable(FILE *out, uint64_t user_seq, const Parley__V1__Message *m, const char *why) {
    print_message(out, user_seq, m, why);
}

void json_print_conversation(FILE *out, const Parley__V1__ConversationSummary *s) {
    fprintf(out, "{\"id\":%" PRIu64 ",\"kind\":\"%s\",\"name\":", s->conversation_id,
            json_kind_name((int)s->kind));
    json_print_string(out, s->name ? s->name : "", s->name ? strlen(s->name) : 0);
    fprintf(out, ",\"last_seq\":%" PRIu64 ",\"read_seq\":%" PRIu64 ",\"unread\":%" PRIu64
                 ",\"members\":",
            s->last_seq, s->read_seq, s->unread);
    print_u64_array(out, s->member_user_ids, s->n_member_user_ids);
    fprintf(out, ",\"request\":%s,\"admins\":", s->request ? "true" : "false");
    print_u64_array(out, s->admin_user_ids, s->n_admin_user_ids);
    fputs("}\n", out);
}

void json_print_typing(FILE *out, const Parley__V1__TypingIndicator *t) {
    fprintf(out, "{\"conv\":%" PRIu64 ",\"type\":\"typing\",\"user\":%" PRIu64
                 ",\"device\":%" PRIu32 ",\"typing\":%s}\n",
            t->conversation_id, t->user_id, t->device_id, t->typing ? "true" : "false");
}
