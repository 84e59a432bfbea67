/* test_group_roles.c -- group roles: the creator is the first admin; only
 * admins add, remove others and rename; any member leaves; the last admin
 * leaving hands the role on. And a new member's history starts where they
 * joined: nothing said before reaches them, by History or by sync. */
#include <string.h>

#include "../check.h"
#include "harness.h"

static h_server S;

/* the admins of conv in d's list: count, and whether user is one */
static int admins_of(h_dev *d, uint64_t conv, uint64_t user, int *is_admin) {
    Parley__V1__ConversationList *l = NULL;
    if (pc_list_conversations(d->c, &l) != 0) return -1;
    int n = -1;
    *is_admin = 0;
    for (size_t i = 0; i < l->n_conversations; i++) {
        const Parley__V1__ConversationSummary *s = l->conversations[i];
        if (s->conversation_id != conv) continue;
        n = (int)s->n_admin_user_ids;
        for (size_t k = 0; k < s->n_admin_user_ids; k++) *is_admin |= s->admin_user_ids[k] == user;
    }
    parley__v1__conversation_list__free_unpacked(l, NULL);
    return n;
}

static void only_admins_change_the_group(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL), *c = h_user_new(&S, NULL),
          *d = h_user_new(&S, NULL);
    CHECK(a && b && c && d, "users");
    uint64_t members[2] = {b->id.user_id, c->id.user_id}, group = 0;
    CHECK(pc_create_group(a->c, "roles", members, 2, &group) == 0, "group: %s", pc_error(a->c));
    int admin = 0;
    CHECK(admins_of(b, group, a->id.user_id, &admin) == 1 && admin, "the creator is not the one admin");

    double refused0 = 0, refused1 = 0;
    CHECK(h_metric(&S, "parley_group_role_refused_total", &refused0) == 0, "metric missing");
    uint64_t newcomer = d->id.user_id;
    CHECK(pc_add_members(b->c, group, &newcomer, 1) != 0, "a member who is not an admin added someone");
    CHECK(pc_status(b->c) == PARLEY__V1__STATUS__FORBIDDEN, "add status %d", pc_status(b->c));
    CHECK(pc_remove_member(b->c, group, c->id.user_id) != 0, "a member who is not an admin removed another");
    CHECK(pc_rename_group(b->c, group, "mine now") != 0, "a member who is not an admin renamed the group");
    CHECK(h_metric(&S, "parley_group_role_refused_total", &refused1) == 0, "metric missing");
    CHECK(refused1 == refused0 + 3, "refusals counted %.0f -> %.0f, want +3", refused0, refused1);

    CHECK(pc_rename_group(a->c, group, "renamed") == 0, "the admin renames: %s", pc_error(a->c));
    CHECK(pc_add_members(a->c, group, &newcomer, 1) == 0, "the admin adds: %s", pc_error(a->c));
    CHECK(pc_remove_member(a->c, group, newcomer) == 0, "the admin removes: %s", pc_error(a->c));
    /* the last admin leaves: someone else holds the role, and can use it */
    CHECK(pc_remove_member(a->c, group, a->id.user_id) == 0, "the admin leaves: %s", pc_error(a->c));
    int b_admin = 0, c_admin = 0;
    CHECK(admins_of(b, group, b->id.user_id, &b_admin) == 1, "not exactly one admin after the last left");
    CHECK(admins_of(c, group, c->id.user_id, &c_admin) == 1, "not exactly one admin (c's view)");
    CHECK(b_admin + c_admin == 1, "neither remaining member is admin");
    h_dev *heir = b_admin ? b : c;
    CHECK(pc_add_members(heir->c, group, &newcomer, 1) == 0, "the new admin adds: %s", pc_error(heir->c));
    /* any member may leave */
    h_dev *other = b_admin ? c : b;
    CHECK(pc_remove_member(other->c, group, other->id.user_id) == 0, "a member leaves: %s", pc_error(other->c));
    h_dev_free(a);
    h_dev_free(b);
    h_dev_free(c);
    h_dev_free(d);
    h_server_destroy(&S);
}

static void history_starts_at_join(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL), *c = h_user_new(&S, NULL);
    CHECK(a && b && c, "users");
    uint64_t member = b->id.user_id, group = 0;
    CHECK(pc_create_group(a->c, "before and after", &member, 1, &group) == 0, "group: %s", pc_error(a->c));
    for (int i = 0; i < 3; i++) CHECK(h_send(a, group, "before c joined") != 0, "send %d", i);
    uint64_t newcomer = c->id.user_id;
    CHECK(pc_add_members(a->c, group, &newcomer, 1) == 0, "add: %s", pc_error(a->c));
    uint64_t after = h_send(a, group, "after c joined");
    CHECK(after != 0, "send after");

    size_t n = 0;
    h_event *hist = h_history_all(c, group, &n);
    CHECK(hist, "history");
    int before = 0, seen_after = 0;
    for (size_t i = 0; i < n; i++) {
        before += h_event_body_is(&hist[i], "before c joined");
        seen_after += hist[i].seq == after;
    }
    h_events_free(hist, n);
    CHECK(before == 0, "the newcomer's history has %d messages from before they joined", before);
    CHECK(seen_after == 1, "the newcomer's history lacks the message after they joined");
    /* b, a member from the start, still reads everything */
    hist = h_history_all(b, group, &n);
    CHECK(hist, "history of b");
    before = 0;
    for (size_t i = 0; i < n; i++) before += h_event_body_is(&hist[i], "before c joined");
    h_events_free(hist, n);
    CHECK(before == 3, "a founding member reads %d of the 3 early messages", before);
    /* sync agrees with history */
    CHECK(h_dev_sync(c, 10000) == 0, "sync");
    h_count_goal goal = {&c, 1, group, 1, 1};
    CHECK(h_pump(&c, 1, h_pred_count, &goal, 10000), "the message after joining did not arrive");
    const h_event *ev[16];
    size_t got = h_dev_conv_events(c, group, 1, ev, 16);
    for (size_t i = 0; i < got; i++)
        CHECK(!h_event_body_is(ev[i], "before c joined"), "sync delivered a message from before joining");
    h_dev_free(a);
    h_dev_free(b);
    h_dev_free(c);
    h_server_destroy(&S);
}

int main(void) {
    RUN(only_admins_change_the_group);
    RUN(history_starts_at_join);
    CHECK_EXIT();
}
