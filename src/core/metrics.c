#include "core/metrics.h"

#include <stdio.h>

metrics g_metrics;

struct metric_row {
    const char *name;
    const char *type;
    const char *help;
    const void *value;  /* atomic_ulong or atomic_long */
    int is_signed;
};

size_t metrics_render(char *out, size_t cap) {
    const struct metric_row rows[] = {
        {"parley_connections", "gauge", "Open WebSocket connections.", &g_metrics.connections, 1},
        {"parley_connections_accepted_total", "counter", "TCP connections accepted.", &g_metrics.connections_accepted_total, 0},
        {"parley_http_requests_total", "counter", "HTTP requests parsed.", &g_metrics.http_requests_total, 0},
        {"parley_frames_in_total", "counter", "WebSocket messages received.", &g_metrics.frames_in_total, 0},
        {"parley_frames_out_total", "counter", "WebSocket messages sent.", &g_metrics.frames_out_total, 0},
        {"parley_bytes_in_total", "counter", "Bytes read from sockets.", &g_metrics.bytes_in_total, 0},
        {"parley_bytes_out_total", "counter", "Bytes written to sockets.", &g_metrics.bytes_out_total, 0},
        {"parley_socket_reads_total", "counter", "Socket reads that returned bytes.", &g_metrics.socket_reads_total, 0},
        {"parley_socket_writes_total", "counter", "Socket writes that sent bytes (one per connection per loop turn).", &g_metrics.socket_writes_total, 0},
        {"parley_protocol_errors_total", "counter", "Connections closed for malformed input.", &g_metrics.protocol_errors_total, 0},
        {"parley_requests_total", "counter", "Protocol requests handled.", &g_metrics.requests_total, 0},
        {"parley_request_errors_total", "counter", "Requests answered with an error status.", &g_metrics.request_errors_total, 0},
        {"parley_messages_stored_total", "counter", "Messages made durable.", &g_metrics.messages_stored_total, 0},
        {"parley_messages_duplicate_total", "counter", "Sends answered with an earlier seq (client_msg_id retry).", &g_metrics.messages_duplicate_total, 0},
        {"parley_store_commits_total", "counter", "Store write batches committed.", &g_metrics.store_commits_total, 0},
        {"parley_store_commit_seconds_total", "counter", "Time spent committing store batches.", NULL, 0},
        {"parley_fanout_messages_total", "counter", "Messages fanned out.", &g_metrics.fanout_messages_total, 0},
        {"parley_fanout_replayed_total", "counter", "Messages fanned out again at start (acknowledged, not fanned out before the stop).", &g_metrics.fanout_replayed_total, 0},
        {"parley_presence_pending", "gauge", "Users with a presence change not yet pushed to subscribers (coalescing).", &g_metrics.presence_pending, 1},
        {"parley_inbox_appends_total", "counter", "Inbox entries appended.", &g_metrics.inbox_appends_total, 0},
        {"parley_deliveries_total", "counter", "Events written to devices (live and sync).", &g_metrics.deliveries_total, 0},
        {"parley_live_pushes_skipped_total", "counter", "Live pushes held back (window, output cap); the device catches up by sync.", &g_metrics.live_pushes_skipped_total, 0},
        {"parley_sync_events_total", "counter", "Events sent by catch-up from the store.", &g_metrics.sync_events_total, 0},
        {"parley_store_watch_probes_total", "counter", "Reads the store watch made while the store failed (workers hold theirs meanwhile: sign-ins answered UNAVAILABLE, catch-up waits).", &g_metrics.store_watch_probes_total, 0},
        {"parley_gateway_store_reads_queued", "gauge", "Store reads (sign-in devices, catch-up pages) waiting for a reader thread (off the gateway workers).", &g_metrics.gateway_store_reads_queued, 1},
        {"parley_gateway_store_reads_total", "counter", "Store reads (sign-in devices, catch-up pages) made by the reader threads.", &g_metrics.gateway_store_reads_total, 0},
        {"parley_gateway_store_reads_refused_total", "counter", "Reads refused at once, the reader queue full: a sign-in answered UNAVAILABLE, a catch-up page tried again by the sweep.", &g_metrics.gateway_store_reads_refused_total, 0},
        {"parley_gateway_catchup_pages_total", "counter", "Catch-up pages (a lagging device's inbox) read by the reader threads, off the gateway workers (Cassandra).", &g_metrics.gateway_catchup_pages_total, 0},
        {"parley_sync_read_failures_total", "counter", "Catch-up reads of a device's inbox the store failed (the device stays behind; retried each second).", &g_metrics.sync_read_failures_total, 0},
        {"parley_receipts_total", "counter", "Receipts pushed to devices.", &g_metrics.receipts_total, 0},
        {"parley_rate_limited_total", "counter", "Requests refused with RATE_LIMITED (send, write and typing buckets, writer share).", &g_metrics.rate_limited_total, 0},
        {"parley_retention_removed_total", "counter", "Records older than the retention removed by compaction.", &g_metrics.retention_removed_total, 0},
        {"parley_sockets_open", "gauge", "Accepted sockets not yet closed (HTTP, WebSocket, closing).", &g_metrics.sockets_open, 1},
        {"parley_draining", "gauge", "1 while the gateway drains after SIGTERM.", &g_metrics.draining, 1},
        {"parley_upgrades_rejected_total", "counter", "Upgrades answered 503 (max connections or draining).", &g_metrics.upgrades_rejected_total, 0},
        {"parley_accept_rate_limited_total", "counter", "Connections over the accept-rate bucket (503 or closed).", &g_metrics.accept_rate_limited_total, 0},
        {"parley_handshake_timeouts_total", "counter", "Connections closed for not finishing the upgrade in time.", &g_metrics.handshake_timeouts_total, 0},
        {"parley_idle_timeouts_total", "counter", "WebSocket connections closed after the idle timeout.", &g_metrics.idle_timeouts_total, 0},
        {"parley_output_overflow_closes_total", "counter", "Connections closed (1008) for queueing output past conn-output-max.", &g_metrics.output_overflow_closes_total, 0},
        {"parley_drain_closes_total", "counter", "Connections closed with 1012 by a drain.", &g_metrics.drain_closes_total, 0},
        {"parley_tls_handshakes_total", "counter", "TLS handshakes completed.", &g_metrics.tls_handshakes_total, 0},
        {"parley_tls_errors_total", "counter", "TLS connections dropped for a handshake or record error.", &g_metrics.tls_errors_total, 0},
        {"parley_writer_queue_depth", "gauge", "Requests waiting for the write path.", &g_metrics.writer_queue_depth, 1},
        {"parley_fanout_queue_depth", "gauge", "Messages waiting for fan-out.", &g_metrics.fanout_queue_depth, 1},
        {"parley_writer_share_refused_total", "counter", "Writes refused (RATE_LIMITED) because the user already had its share of the writer queue.", &g_metrics.writer_share_refused_total, 0},
        {"parley_link_tokens_expired_total", "counter", "Expired link tokens deleted.", &g_metrics.link_tokens_expired_total, 0},
        {"parley_link_tokens_replaced_total", "counter", "Outstanding link tokens dropped for a newer one of the same user.", &g_metrics.link_tokens_replaced_total, 0},
        {"parley_device_queue_full_total", "counter", "Device messages refused (TOO_LARGE): a device queue or sender cap was reached.", &g_metrics.device_queue_full_total, 0},
        {"parley_device_acks_coalesced_total", "counter", "AckDeviceMessages not written on their own (folded into another, or not advancing).", &g_metrics.device_acks_coalesced_total, 0},
        {"parley_devices_removed_closed_total", "counter", "Connections of a removed device closed (1008).", &g_metrics.devices_removed_closed_total, 0},
        {"parley_removed_device_refused_total", "counter", "Requests of a removed device refused.", &g_metrics.removed_device_refused_total, 0},
        {"parley_auth_refused_total", "counter", "Sign-in requests refused: another in progress, or the challenge already used.", &g_metrics.auth_refused_total, 0},
        {"parley_registrations_rate_limited_total", "counter", "RegisterUser refused over --register-rate for its source address.", &g_metrics.registrations_rate_limited_total, 0},
        {"parley_request_limit_refused_total", "counter", "Messages refused: the unaccepted message-request bound was reached.", &g_metrics.request_limit_refused_total, 0},
        {"parley_blocked_refused_total", "counter", "Requests refused because the target user blocked the caller.", &g_metrics.blocked_refused_total, 0},
        {"parley_key_claims_rate_limited_total", "counter", "Pre-key claims refused: the target has not accepted the caller and the claim bound was reached.", &g_metrics.key_claims_rate_limited_total, 0},
        {"parley_presence_subscriptions_dropped_total", "counter", "Presence subscriptions ended because the watched user blocked the subscriber.", &g_metrics.presence_subscriptions_dropped_total, 0},
        {"parley_group_role_refused_total", "counter", "Group changes refused: only admins add, remove others or rename.", &g_metrics.group_role_refused_total, 0},
        {"parley_input_pauses_total", "counter", "Times a connection's input was paused: output past conn-output-cap or max-in-flight requests.", &g_metrics.input_pauses_total, 0},
        {"parley_requests_too_large_total", "counter", "Requests refused (TOO_LARGE) by their type's size limit, before decoding.", &g_metrics.requests_too_large_total, 0},
        {"parley_decode_budget_refusals_total", "counter", "Requests refused (TOO_LARGE) because decoding them needed more memory than their budget.", &g_metrics.decode_budget_refusals_total, 0},
        {"parley_writer_queued_bytes", "gauge", "Decoded request bytes waiting for the write path.", &g_metrics.writer_queued_bytes, 1},
        {"parley_writer_bytes_refusals_total", "counter", "Requests answered UNAVAILABLE because writer-queue-bytes was reached.", &g_metrics.writer_bytes_refusals_total, 0},
        {"parley_signin_timeouts_total", "counter", "Connections closed (1008) for not signing in within signin-timeout.", &g_metrics.signin_timeouts_total, 0},
        {"parley_address_limited_total", "counter", "Sockets closed at accept: max-pending-per-address reached.", &g_metrics.address_limited_total, 0},
        {"parley_history_pages_byte_capped_total", "counter", "History pages ended early by history-page-bytes.", &g_metrics.history_pages_byte_capped_total, 0},
        {"parley_acks_submitted_total", "counter", "Cursor advances (Ack) handed to the write path: at most one per connection per loop turn.", &g_metrics.acks_submitted_total, 0},
        {"parley_acks_coalesced_total", "counter", "Acks folded into a later Ack of the same connection and loop turn, not written on their own.", &g_metrics.acks_coalesced_total, 0},
        {"parley_keys_refused_total", "counter", "UploadKeys refused: a key not exactly 32 bytes, or a signed pre-key whose Ed25519 signature by the identity key does not verify.", &g_metrics.keys_refused_total, 0},
        {"parley_web_files_served_total", "counter", "Browser client files served (--web-root).", &g_metrics.web_files_served_total, 0},
        {"parley_web_files_refused_total", "counter", "Requests for browser client files answered 404 or 500 (absent, a path not allowed, over 8 MiB).", &g_metrics.web_files_refused_total, 0},
        {"parley_writer_member_reads_total", "counter", "Member records the write path read from the store.", &g_metrics.writer_member_reads_total, 0},
        {"parley_writer_dedupe_reads_total", "counter", "Dedupe records (client_msg_id) the write path read from the store.", &g_metrics.writer_dedupe_reads_total, 0},
        {"parley_writer_consent_reads_total", "counter", "Consent records the write path read from the store.", &g_metrics.writer_consent_reads_total, 0},
        {"parley_writer_last_seq_reads_total", "counter", "Conversation last seqs the write path read from the store.", &g_metrics.writer_last_seq_reads_total, 0},
        {"parley_writer_member_cache_hits_total", "counter", "Member records the write path found in its cache.", &g_metrics.writer_member_cache_hits_total, 0},
        {"parley_writer_dedupe_cache_hits_total", "counter", "Send retries answered from the write path's recent-ids cache.", &g_metrics.writer_dedupe_cache_hits_total, 0},
        {"parley_writer_consent_cache_hits_total", "counter", "Consent states the write path found in its cache.", &g_metrics.writer_consent_cache_hits_total, 0},
        {"parley_writer_dedupe_prefetched_total", "counter", "Dedupe reads made together for a batch of sends (network stores).", &g_metrics.writer_dedupe_prefetched_total, 0},
        {"parley_log_ranges_taken_total", "counter", "Fan-out log offset ranges the write path claimed at a partition load.", &g_metrics.log_ranges_taken_total, 0},
        {"parley_log_ranges_unclaimed_total", "counter", "Fan-out log range claims lost to another writer (the next range was tried).", &g_metrics.log_ranges_unclaimed_total, 0},
        {"parley_mqtt_connections", "gauge", "MQTT connections signed in (past CONNACK).", &g_metrics.mqtt_connections, 1},
        {"parley_mqtt_connects_total", "counter", "MQTT CONNECTs accepted (CONNACK success).", &g_metrics.mqtt_connects_total, 0},
        {"parley_mqtt_auth_failures_total", "counter", "MQTT CONNECTs refused: client id, user name or password, signature, stale or replayed password.", &g_metrics.mqtt_auth_failures_total, 0},
        {"parley_mqtt_malformed_total", "counter", "MQTT connections ended for a malformed or forbidden packet (reason code or close).", &g_metrics.mqtt_malformed_total, 0},
        {"parley_mqtt_too_large_total", "counter", "MQTT packets over --max-message (DISCONNECT 0x95 or close).", &g_metrics.mqtt_too_large_total, 0},
        {"parley_mqtt_takeovers_total", "counter", "Older MQTT connections of a client id closed by a newer CONNECT (MQTT 5 DISCONNECT 0x8E).", &g_metrics.mqtt_takeovers_total, 0},
        {"parley_mqtt_takeovers_refused_total", "counter", "MQTT CONNECTs refused as busy: the worker of the client id's older connection had a full inbox.", &g_metrics.mqtt_takeovers_refused_total, 0},
        {"parley_mqtt_puback_errors_total", "counter", "Event PUBACKs with a reason code of 0x80 or more: not taken as Acks.", &g_metrics.mqtt_puback_errors_total, 0},
        {"parley_mqtt_acks_held_total", "counter", "Event PUBACKs whose cursor write waited to be folded into a later one.", &g_metrics.mqtt_acks_held_total, 0},
        {"parley_mqtt_subscribe_refused_total", "counter", "MQTT topic filters refused in SUBACK: not the device's own topics.", &g_metrics.mqtt_subscribe_refused_total, 0},
        {"parley_cluster_bus_channels", "gauge", "Users whose presence/typing channel (sharded pub/sub) this node wants to hear.", &g_metrics.cluster_bus_channels, 1},
        {"parley_cluster_bus_refused_total", "counter", "Users not subscribed on the presence bus: the per-node channel cap was reached.", &g_metrics.cluster_bus_refused_total, 0},
        {"parley_cluster_bus_published_total", "counter", "SPUBLISH commands queued on the presence bus (presence changes, typing indicators).", &g_metrics.cluster_bus_published_total, 0},
        {"parley_cluster_bus_received_total", "counter", "Messages taken from subscribed presence bus channels.", &g_metrics.cluster_bus_received_total, 0},
        {"parley_cluster_bus_failures_total", "counter", "Presence bus publishes, presence reads or subscriptions that failed.", &g_metrics.cluster_bus_failures_total, 0},
        {"parley_cluster_bus_dropped_total", "counter", "Presence bus frames for local connections dropped: the worker's queue was full.", &g_metrics.cluster_bus_dropped_total, 0},
        {"parley_cluster_sessions", "gauge", "This node's sessions written to the Redis session registry (--redis).", &g_metrics.cluster_sessions, 1},
        {"parley_cluster_session_write_failures_total", "counter", "Session registry writes that could not be queued or got no answer from Redis.", &g_metrics.cluster_session_write_failures_total, 0},
        {"parley_cluster_sessions_gone_total", "counter", "Session refreshes that found the entry expired or replaced by a newer connect.", &g_metrics.cluster_sessions_gone_total, 0},
        {"parley_cluster_node_heartbeat_failures_total", "counter", "Node directory refreshes that failed (the entry expires after --node-ttl-ms).", &g_metrics.cluster_node_heartbeat_failures_total, 0},
        {"parley_cluster_link_malformed_total", "counter", "Node link connections closed for a malformed frame.", &g_metrics.cluster_link_malformed_total, 0},
        {"parley_cluster_link_auth_failed_total", "counter", "Node link connections closed for a PROOF that did not verify (another --cluster-secret).", &g_metrics.cluster_link_auth_failed_total, 0},
        {"parley_cluster_session_heartbeats_total", "counter", "Session heartbeat rounds done: every session of this node refreshed in Redis once.", &g_metrics.cluster_session_heartbeats_total, 0},
        {"parley_cluster_session_refreshes_in_flight_peak", "gauge", "The most session refreshes sent to Redis and not yet answered at once since start (one heartbeat batch at most).", &g_metrics.cluster_session_refreshes_in_flight_peak, 1},
        {"parley_writer_commits_in_flight", "gauge", "Conversation writers' commits sent to a network store and not yet completed.", &g_metrics.writer_commits_in_flight, 1},
        {"parley_writer_commits_in_flight_peak", "gauge", "The most conversation writer commits in flight at once since start.", &g_metrics.writer_commits_in_flight_peak, 1},
        {"parley_writer_commits_async_total", "counter", "Conversation writer commits sent to a network store without waiting for them.", &g_metrics.writer_commits_async_total, 0},
        {"parley_writer_commit_waits_total", "counter", "Batches that waited for a commit in flight of one of their conversations.", &g_metrics.writer_commit_waits_total, 0},
        {"parley_writer_retries_in_flight_total", "counter", "Send retries (same client_msg_id) whose first attempt's commit was in flight: answered after it.", &g_metrics.writer_retries_in_flight_total, 0},
        {"parley_cluster_chat_link_up", "gauge", "Gateway node: 1 while a chat node is linked both ways (requests are forwarded), else 0 (they are answered UNAVAILABLE).", &g_metrics.cluster_chat_link_up, 1},
        {"parley_cluster_directory_shards_missing", "gauge", "Node directory shards (of 8) that did not answer the last listing (their master silent): the peers they hold keep what an earlier listing said.", &g_metrics.cluster_directory_shards_missing, 1},
        {"parley_cluster_requests_forwarded_total", "counter", "Gateway node: requests and acks sent to a chat node over the link.", &g_metrics.cluster_requests_forwarded_total, 0},
        {"parley_cluster_requests_refused_total", "counter", "Gateway node: requests answered UNAVAILABLE (retry) for want of a chat node link.", &g_metrics.cluster_requests_refused_total, 0},
        {"parley_cluster_remote_requests_total", "counter", "Chat node: requests taken from gateway nodes.", &g_metrics.cluster_remote_requests_total, 0},
        {"parley_cluster_remote_deliveries_total", "counter", "Chat node: inbox events sent to gateway nodes (DELIVER frames).", &g_metrics.cluster_remote_deliveries_total, 0},
        {"parley_cluster_frames_dropped_total", "counter", "Frames for another node dropped (no link, unknown node, full queue); devices catch up by sync or retry.", &g_metrics.cluster_frames_dropped_total, 0},
        {"parley_cluster_lookup_failures_total", "counter", "Redis session lookups that failed (that user's devices on other nodes missed the event until sync).", &g_metrics.cluster_lookup_failures_total, 0},
        {"parley_writer_gathers_total", "counter", "Writer pops that found a short queue and waited up to the gather time for more requests before committing.", &g_metrics.writer_gathers_total, 0},
        {"parley_kafka_sends_logged_total", "counter", "--kafka: sends handed to the 'sends' topic.", &g_metrics.kafka_sends_logged_total, 0},
        {"parley_kafka_sends_failed_total", "counter", "--kafka: sends Kafka refused or failed to store (answered UNAVAILABLE, retry).", &g_metrics.kafka_sends_failed_total, 0},
        {"parley_kafka_sends_accepted_total", "counter", "--kafka: sends answered ACCEPTED (durable in Kafka, not stored yet; SENT follows).", &g_metrics.kafka_sends_accepted_total, 0},
        {"parley_kafka_owner_records_total", "counter", "--kafka chat node: 'sends' records fed to its writers (reprocessed ones again).", &g_metrics.kafka_owner_records_total, 0},
        {"parley_kafka_owner_commits_total", "counter", "--kafka chat node: input offsets committed in a transaction after the store commit.", &g_metrics.kafka_owner_commits_total, 0},
        {"parley_kafka_owner_retries_total", "counter", "--kafka chat node: batches aborted and read again (store failing, writer busy, partitions moved).", &g_metrics.kafka_owner_retries_total, 0},
        {"parley_kafka_owner_partitions", "gauge", "--kafka chat node: 'sends' partitions this node owns now.", &g_metrics.kafka_owner_partitions, 1},
        {"parley_kafka_owner_store_waiting", "gauge", "--kafka chat node: 1 while the owner waits for the store (records wait in Kafka).", &g_metrics.kafka_owner_store_waiting, 1},
        {"parley_kafka_handover_replayed_total", "counter", "--kafka chat node: fan-out log entries read again when given partitions (from each one's least checkpoint; what the previous owner stored and had not fanned out is fanned out, what an inbox has is skipped).", &g_metrics.kafka_handover_replayed_total, 0},
        {"parley_kafka_group_reruns_total", "counter", "--kafka chat node: CreateGroup 'sends' records run again (their owner died before committing its input offsets) and answered with the group their first run created, not a second one.", &g_metrics.kafka_group_reruns_total, 0},
        {"parley_kafka_delivered_records_logged_total", "counter", "--kafka: records of delivered raises handed to the 'sends' topic (one per Ack and partition), for the conversation's owner to apply.", &g_metrics.kafka_delivered_records_logged_total, 0},
        {"parley_kafka_delivered_records_applied_total", "counter", "--kafka chat node: records of delivered raises this owner applied (only upward) and stored (reprocessed ones again).", &g_metrics.kafka_delivered_records_applied_total, 0},
        {"parley_kafka_delivered_raises_dropped_total", "counter", "--kafka: delivered raises dropped (Kafka refused them, or the log was not up yet); the device's next ack raises the mark.", &g_metrics.kafka_delivered_raises_dropped_total, 0},
        {"parley_cluster_session_lookups_single_total", "counter", "Chat node: Redis session lookups of one user in a round trip of its own (not answered from a prefetch).", &g_metrics.cluster_session_lookups_single_total, 0},
        {"parley_cluster_session_prefetches_total", "counter", "Chat node: pipelined Redis rounds that looked up many users' sessions at once (fan-out, push, the writer's receipts).", &g_metrics.cluster_session_prefetches_total, 0},
        {"parley_cluster_session_lookups_prefetched_total", "counter", "Chat node: users looked up in those pipelined rounds.", &g_metrics.cluster_session_lookups_prefetched_total, 0},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && n < cap; i++) {
        const struct metric_row *r = &rows[i];
        int w;
        if (r->value == NULL) { /* the one derived metric: ns -> seconds */
            double s = (double)atomic_load(&g_metrics.store_commit_ns_total) / 1e9;
            w = snprintf(out + n, cap - n, "# HELP %s %s\n# TYPE %s %s\n%s %.6f\n", r->name,
                         r->help, r->name, r->type, r->name, s);
        } else if (r->is_signed) {
            w = snprintf(out + n, cap - n, "# HELP %s %s\n# TYPE %s %s\n%s %ld\n", r->name,
                         r->help, r->name, r->type, r->name,
                         atomic_load((const atomic_long *)r->value));
        } else {
            w = snprintf(out + n, cap - n, "# HELP %s %s\n# TYPE %s %s\n%s %lu\n", r->name,
                         r->help, r->name, r->type, r->name,
                         atomic_load((const atomic_ulong *)r->value));
        }
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
    return n;
}
