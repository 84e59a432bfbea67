/* push_subscription.h -- PushRegister and PushUnregister on the accounts
 * writer (chat/writer_route.c: requests of no conversation go there): one
 * subscription per device, replaced by a new one. */
#ifndef PARLEY_PUSH_SUBSCRIPTION_H
#define PARLEY_PUSH_SUBSCRIPTION_H

#include "chat/writer_internal.h"

void handle_push_register(writer *w, chat_request *r);
void handle_push_unregister(writer *w, chat_request *r);

#endif
