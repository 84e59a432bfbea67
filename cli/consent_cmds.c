/* consent_cmds.c -- message requests and group administration:
 * accept CONV, decline CONV, block USER, unblock USER, rename CONV NAME. */
#include <string.h>

#include "cli.h"

int cli_cmd_consent(cli_ctx *ctx, const char *cmd, const char *arg, const char *name) {
    bool on_user = strcmp(cmd, "block") == 0 || strcmp(cmd, "unblock") == 0;
    uint64_t id = 0;
    if (on_user) {
        if (cli_resolve_user(ctx->c, cmd, arg, &id) < 0) return 1;
    } else if (cli_parse_u64(arg, &id) != 0 || id == 0) {
        fprintf(stderr, CLI_NAME ": %s: not a conversation id: %s\n", cmd, arg);
        return 2;
    }
    int r;
    if (strcmp(cmd, "accept") == 0) r = pc_accept_request(ctx->c, id);
    else if (strcmp(cmd, "decline") == 0) r = pc_decline_request(ctx->c, id);
    else if (strcmp(cmd, "rename") == 0) r = pc_rename_group(ctx->c, id, name);
    else r = pc_block_user(ctx->c, id, strcmp(cmd, "unblock") == 0);
    if (r < 0) {
        cli_report(cmd, ctx->c);
        return 1;
    }
    return 0;
}
