/* realtime.h -- the requests a worker answers itself beyond messaging:
 * presence subscriptions, typing indicators, receipt and device-list reads,
 * and pending device messages at sync. */
#ifndef PARLEY_GATEWAY_REALTIME_H
#define PARLEY_GATEWAY_REALTIME_H

#include "gateway/conn.h"

void realtime_subscribe_presence(worker *w, conn *c, const Parley__V1__Frame *f);
void realtime_typing(worker *w, conn *c, const Parley__V1__Frame *f);
void realtime_get_receipts(worker *w, conn *c, const Parley__V1__Frame *f);
void realtime_get_devices(worker *w, conn *c, const Parley__V1__Frame *f);
/* StartSync: the device messages waiting in this device's queue are to be
 * pushed (from the first), paged under the output cap by
 * realtime_pump_device_messages as room appears. On Cassandra the pages are
 * read off the worker (gateway/device_message_read.h): the pump asks for a
 * page and returns; realtime_device_messages_page goes on when it comes
 * (WM_DEVICE_MESSAGES). */
void realtime_push_device_messages(worker *w, conn *c);
void realtime_pump_device_messages(worker *w, conn *c);
void realtime_device_messages_page(worker *w, conn *c, const worker_msg *m);

#endif
