/* metrics.h -- process-wide counters, exported at /metrics in the
 * Prometheus text format. Relaxed atomics: each counter is exact, the set is
 * not a snapshot. */
#ifndef PARLEY_CORE_METRICS_H
#define PARLEY_CORE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct metrics {
    atomic_long connections;              /* gauge: open WebSocket connections */
    atomic_ulong connections_accepted_total;
    atomic_ulong http_requests_total;
    atomic_ulong frames_in_total;
    atomic_ulong frames_out_total;
    atomic_ulong bytes_in_total;
    atomic_ulong bytes_out_total;
    atomic_ulong socket_reads_total;      /* WebSocket/HTTP reads that returned bytes */
    atomic_ulong socket_writes_total;     /* writes that sent bytes: one per connection
                                             per loop turn, however many frames */
    atomic_ulong protocol_errors_total;   /* connections closed for bad input */
    atomic_ulong requests_total;
    atomic_ulong request_errors_total;    /* responses with status != OK */
    atomic_ulong messages_stored_total;
    atomic_ulong messages_duplicate_total;/* retries answered with the first seq */
    atomic_ulong store_commits_total;
    atomic_ulong store_commit_ns_total;   /* time spent in store commits */
    atomic_ulong fanout_messages_total;
    atomic_ulong fanout_replayed_total;   /* acked, not fanned out before a crash: fanned out at start */
    atomic_long presence_pending;         /* gauge: users whose presence change subscribers were not told yet */
    atomic_ulong inbox_appends_total;
    atomic_ulong deliveries_total;        /* events written to sockets (live + sync) */
    atomic_ulong live_pushes_skipped_total; /* live pushes not sent: window full,
                                               output cap, or gap; caught up by sync */
    atomic_ulong sync_events_total;       /* events sent by catch-up from the store */
    atomic_ulong sync_read_failures_total; /* catch-up reads the store failed (retried by the sweep) */
    atomic_ulong store_watch_probes_total; /* reads by the store watch while the store failed */
    atomic_long gateway_store_reads_queued;        /* gauge: reads waiting for a reader (gateway/store_reads.h) */
    atomic_ulong gateway_store_reads_total;        /* reads the readers made (sign-ins, catch-up pages, MQTT) */
    atomic_ulong gateway_store_reads_refused_total; /* reads refused: the read queue was full */
    atomic_ulong gateway_catchup_pages_total;      /* catch-up pages read off the workers (gateway/catchup_read.h) */
    atomic_ulong gateway_mqtt_connect_reads_total; /* MQTT CONNECT reads off the workers (gateway/mqtt_connect_read.h) */
    atomic_ulong gateway_device_message_pages_total; /* StartSync's device-message pages off the workers */
    atomic_ulong gateway_request_reads_total;      /* History, ListConversations, LookupUser off the workers (gateway/request_read.h) */
    atomic_ulong receipts_total;
    atomic_ulong retention_removed_total;
    atomic_ulong rate_limited_total;      /* sends and typing refused with RATE_LIMITED */ /* records dropped by retention at compaction */
    /* limits and load shedding (gateway) */
    atomic_long sockets_open;             /* gauge: accepted sockets, any state */
    atomic_long draining;                 /* gauge: 1 while a SIGTERM drain runs */
    atomic_ulong upgrades_rejected_total; /* 503: max connections reached or draining */
    atomic_ulong accept_rate_limited_total; /* over the accept-rate bucket: 503 or closed */
    atomic_ulong handshake_timeouts_total;
    atomic_ulong idle_timeouts_total;
    atomic_ulong output_overflow_closes_total; /* 1008: output past conn-output-max */
    atomic_ulong drain_closes_total;      /* 1012 during a drain */
    atomic_ulong tls_handshakes_total;    /* completed */
    atomic_ulong tls_errors_total;        /* handshake or record failures */
    atomic_long writer_queue_depth;       /* gauges, sampled */
    atomic_long fanout_queue_depth;
    /* quotas and fairness (core/quota.h) */
    atomic_ulong writer_share_refused_total; /* a user's share of the writer queue was full */
    atomic_ulong link_tokens_expired_total;  /* expired link tokens deleted */
    atomic_ulong link_tokens_replaced_total; /* oldest outstanding token dropped for a new one */
    atomic_ulong device_queue_full_total;    /* device messages refused: a queue cap */
    atomic_ulong device_acks_coalesced_total;/* AckDeviceMessages folded or dropped, not written */
    /* consent, roles, devices, sign-in */
    atomic_ulong devices_removed_closed_total;  /* connections of a removed device closed (1008) */
    atomic_ulong removed_device_refused_total;  /* requests of a removed device refused */
    atomic_ulong auth_refused_total;            /* sign-ins refused: one at a time, nonce used */
    atomic_ulong registrations_rate_limited_total; /* RegisterUser over --register-rate */
    atomic_ulong request_limit_refused_total;   /* message requests past the unaccepted bound */
    atomic_ulong blocked_refused_total;         /* requests refused because the target blocked the caller */
    atomic_ulong key_claims_rate_limited_total; /* pre-key claims of an unaccepted contact refused */
    atomic_ulong group_role_refused_total;      /* group changes by a non-admin refused */
    atomic_ulong presence_subscriptions_dropped_total; /* presence of a user who blocked the subscriber */
    /* memory and request limits (abuse) */
    atomic_ulong input_pauses_total;      /* a connection's input stopped: output cap or in-flight cap */
    atomic_ulong requests_too_large_total;/* refused by the per-request-type size limit */
    atomic_ulong decode_budget_refusals_total; /* decoding needed more memory than its budget */
    atomic_long writer_queued_bytes;      /* gauge: decoded requests waiting for the writer */
    atomic_ulong writer_bytes_refusals_total; /* UNAVAILABLE: writer-queue-bytes reached */
    atomic_ulong signin_timeouts_total;
    atomic_ulong address_limited_total;   /* closed at accept: max-pending-per-address */
    atomic_ulong history_pages_byte_capped_total;
    /* acks: coalesced per connection per loop turn before they reach the writer */
    atomic_ulong acks_submitted_total;          /* cursor advances (CHAT_ACK) handed to the writer */
    atomic_ulong acks_coalesced_total;          /* Acks folded into a later one of the same turn */
    atomic_ulong keys_refused_total;            /* UploadKeys refused: key length or pre-key signature */
    atomic_ulong web_files_served_total;        /* browser client files sent (static_files.h) */
    atomic_ulong web_files_refused_total;       /* 404/500 for them: absent, a path not allowed, too big */
    /* store reads made by the write path's owners, per kind (chat/writer_cache.h) */
    atomic_ulong writer_member_reads_total;     /* member records */
    atomic_ulong writer_dedupe_reads_total;     /* client_msg_id dedupe records (sends) */
    atomic_ulong writer_consent_reads_total;    /* consent records */
    atomic_ulong writer_last_seq_reads_total;   /* a conversation's last seq */
    atomic_ulong writer_member_cache_hits_total;
    atomic_ulong writer_dedupe_cache_hits_total;
    atomic_ulong writer_consent_cache_hits_total;
    atomic_ulong writer_dedupe_prefetched_total; /* of the dedupe reads: made together (writer_prefetch.h) */
    /* fan-out log ranges (chat/log_range.h) */
    atomic_ulong log_ranges_taken_total;        /* ranges a writer claimed and numbers its log in */
    atomic_ulong log_ranges_unclaimed_total;    /* claims lost: another writer had the range */
    /* MQTT (gateway/mqtt_conn.c) */
    atomic_long mqtt_connections;         /* gauge: MQTT connections past CONNACK */
    atomic_ulong mqtt_connects_total;     /* CONNACK accepted */
    atomic_ulong mqtt_auth_failures_total;/* CONNACK refused: bad id, credentials, signature, stale or replayed */
    atomic_ulong mqtt_malformed_total;    /* connections ended for a malformed or forbidden packet */
    atomic_ulong mqtt_too_large_total;    /* packets over --max-message (0x95 / close) */
    atomic_ulong mqtt_takeovers_total;    /* older MQTT connections of a device closed by a newer CONNECT (0x8E) */
    atomic_ulong mqtt_takeovers_refused_total; /* CONNECTs refused busy: the older one's worker inbox was full */
    atomic_ulong mqtt_puback_errors_total; /* event PUBACKs with a reason >= 0x80: not taken as Acks */
    atomic_ulong mqtt_acks_held_total;     /* event PUBACKs whose cursor write waits for later ones (mqtt_conn.c) */
    atomic_ulong mqtt_subscribe_refused_total; /* topic filters refused: not the device's own */
    /* many nodes (src/cluster/) */
    atomic_long cluster_sessions;                  /* gauge: this node's sessions in the Redis registry */
    atomic_ulong cluster_session_write_failures_total; /* session writes not queued or not answered */
    atomic_ulong cluster_sessions_gone_total;      /* heartbeats that found a session expired or replaced */
    atomic_ulong cluster_node_heartbeat_failures_total; /* node directory refreshes that failed */
    atomic_ulong cluster_link_malformed_total;     /* node link connections closed for a malformed frame */
    atomic_ulong cluster_link_auth_failed_total;   /* node link connections closed for a PROOF that did not verify */
    atomic_ulong cluster_session_heartbeats_total; /* session heartbeat rounds done (session_registry.c) */
    atomic_long cluster_session_refreshes_in_flight_peak; /* gauge: most session refreshes awaiting Redis at once */
    /* conversation writers' commits in flight on a network store (chat/writer_commit.c) */
    atomic_long writer_commits_in_flight;       /* gauge */
    atomic_long writer_commits_in_flight_peak;  /* gauge: the most at once since start */
    atomic_ulong writer_commits_async_total;    /* commits sent without waiting */
    atomic_ulong writer_commit_waits_total;     /* batches that waited for their conversation's commit */
    atomic_ulong writer_retries_in_flight_total; /* send retries whose first attempt was in flight */
    atomic_long cluster_chat_link_up;              /* gauge, gateway node: 1 while a chat node is linked both ways */
    atomic_long cluster_directory_shards_missing;  /* gauge: node directory shards the last listing missed */
    atomic_ulong cluster_requests_forwarded_total; /* gateway node: requests and acks sent to a chat node */
    atomic_ulong cluster_requests_refused_total;   /* gateway node: answered 503 "retry" (no chat node link) */
    atomic_ulong cluster_remote_requests_total;    /* chat node: requests taken from gateway nodes */
    atomic_ulong cluster_remote_deliveries_total;  /* chat node: DELIVER frames sent to gateway nodes */
    atomic_ulong cluster_frames_dropped_total;     /* frames for another node dropped: no link, unknown node */
    atomic_ulong cluster_lookup_failures_total;    /* Redis session lookups that failed (local devices only) */
    /* steady-rate batching: pops that waited for a short queue to grow (core/mpsc.h mpsc_pop_gather) */
    atomic_ulong writer_gathers_total;
    /* presence and typing across nodes (cluster/presence_bus.c) */
    atomic_long cluster_bus_channels;              /* gauge: users whose sharded channel this node wants */
    atomic_ulong cluster_bus_refused_total;        /* users not subscribed: the per-node channel cap */
    atomic_ulong cluster_bus_published_total;      /* SPUBLISH queued (presence changes, typing) */
    atomic_ulong cluster_bus_received_total;       /* messages taken from subscribed channels */
    atomic_ulong cluster_bus_failures_total;       /* publishes, presence reads or subscriptions that failed */
    atomic_ulong cluster_bus_dropped_total;        /* frames for local connections dropped: worker queue full */
    /* --kafka (cluster/send_log.c, cluster/chat_owner.c) */
    atomic_ulong kafka_sends_logged_total;     /* sends handed to the 'sends' topic */
    atomic_ulong kafka_sends_failed_total;     /* sends Kafka refused: answered UNAVAILABLE (retry) */
    atomic_ulong kafka_sends_accepted_total;   /* sends answered ACCEPTED (durable, not yet stored) */
    atomic_ulong kafka_owner_records_total;    /* 'sends' records fed to this chat node's writers */
    atomic_ulong kafka_owner_commits_total;    /* input offsets committed (in a transaction) */
    atomic_ulong kafka_owner_retries_total;    /* batches aborted and read again (store failing, busy, rebalance) */
    atomic_long kafka_owner_partitions;        /* gauge: 'sends' partitions this node owns */
    atomic_long kafka_owner_store_waiting;     /* gauge: 1 while the owner waits for the store */
    atomic_ulong kafka_handover_replayed_total; /* log entries read again when given partitions */
    atomic_ulong kafka_group_reruns_total;     /* CreateGroup records run again, answered their first group */
    atomic_ulong kafka_delivered_records_logged_total;  /* delivered raises handed to 'sends' (one record per Ack and partition) */
    atomic_ulong kafka_delivered_records_applied_total; /* ... applied and stored by this owner */
    atomic_ulong kafka_delivered_raises_dropped_total;  /* raises Kafka refused or that came before the log started */
    /* chat node's Redis session lookups (cluster/node_forward.c): round trips */
    atomic_ulong cluster_session_lookups_single_total;     /* one user, one round trip */
    atomic_ulong cluster_session_prefetches_total;         /* pipelined rounds (node_sessions_prefetch) */
    atomic_ulong cluster_session_lookups_prefetched_total; /* users asked in those rounds */
} metrics;

extern metrics g_metrics;

#define METRIC_ADD(name, n) atomic_fetch_add_explicit(&g_metrics.name, (n), memory_order_relaxed)
#define METRIC_INC(name) METRIC_ADD(name, 1)

/* Renders every metric into out (at most cap bytes); returns the length. */
size_t metrics_render(char *out, size_t cap);

#endif
