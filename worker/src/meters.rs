//! Every metric of `/metrics`: described (Prometheus HELP text) and
//! present from the first scrape, at 0 where nothing happened yet, for
//! every queue, so alerts and dashboards work on a fresh worker (issue 11
//! item 20, issue 16 item 11).

use metrics::{describe_counter, describe_gauge};

/// Label values of `gatehouse_purge_runs_total`.
const PURGE_STATUSES: [&str; 2] = ["succeeded", "failed"];
/// Label values of `gatehouse_purge_rows_total`.
const PURGE_KINDS: [&str; 3] = ["users", "sessions", "codes"];

/// Describe every metric and set it to 0. Call once the recorder is
/// installed.
pub fn init() {
    describe_counter!(
        "gatehouse_jobs_done_total",
        "Jobs that ran to completion without error, by queue (duplicate deliveries are not counted here)."
    );
    describe_counter!(
        "gatehouse_jobs_failed_total",
        "Job attempts that ended in an error, by queue (each retry counts)."
    );
    describe_counter!(
        "gatehouse_jobs_retried_total",
        "Job attempts that were retries of a failed attempt, by queue."
    );
    describe_counter!(
        "gatehouse_jobs_rejected_total",
        "Job payloads refused without running: unknown version, a time in the future, or no outbox entry, by queue."
    );
    describe_counter!(
        "gatehouse_jobs_duplicates_total",
        "Deliveries skipped because the same job was done or running elsewhere (its outbox claim), by queue."
    );
    describe_counter!(
        "gatehouse_outbox_relayed_total",
        "Outbox entries the sweeper pushed to Redis (missed at commit time, or redelivered)."
    );
    describe_counter!(
        "gatehouse_outbox_recovered_total",
        "Outbox entries pushed again because Redis lost them before any worker took them."
    );
    describe_gauge!(
        "gatehouse_outbox_pending",
        "Outbox entries not completed yet."
    );
    describe_gauge!(
        "gatehouse_queue_depth",
        "Jobs waiting in Redis (ready and scheduled), by queue."
    );
    describe_gauge!(
        "gatehouse_workers_running",
        "Consumers and scheduled-job timers of this process that run right now."
    );
    describe_counter!(
        "gatehouse_purge_runs_total",
        "Purge runs this process executed, by status and dry_run."
    );
    describe_counter!(
        "gatehouse_purge_rows_total",
        "Rows the purge deleted, by kind (users, sessions, codes)."
    );
    describe_gauge!(
        "gatehouse_purge_last_success_timestamp_seconds",
        "Unix time of the last successful purge by any worker; 0 if none yet."
    );
    describe_counter!(
        "gatehouse_key_rotations_total",
        "Signing-key rotation steps, by trigger and outcome."
    );
    describe_gauge!(
        "gatehouse_signing_key_age_seconds",
        "Age of the key that signs new tokens."
    );

    for queue in gatehouse_shared::jobs::queues() {
        for name in [
            "gatehouse_jobs_done_total",
            "gatehouse_jobs_failed_total",
            "gatehouse_jobs_retried_total",
            "gatehouse_jobs_rejected_total",
            "gatehouse_jobs_duplicates_total",
        ] {
            metrics::counter!(name, "queue" => queue).increment(0);
        }
        metrics::gauge!("gatehouse_queue_depth", "queue" => queue).increment(0.0);
    }
    for status in PURGE_STATUSES {
        for dry_run in ["false", "true"] {
            metrics::counter!("gatehouse_purge_runs_total", "status" => status, "dry_run" => dry_run)
                .increment(0);
        }
    }
    for kind in PURGE_KINDS {
        metrics::counter!("gatehouse_purge_rows_total", "kind" => kind).increment(0);
    }
    metrics::counter!("gatehouse_outbox_relayed_total").increment(0);
    metrics::counter!("gatehouse_outbox_recovered_total").increment(0);
    metrics::gauge!("gatehouse_outbox_pending").increment(0.0);
    metrics::gauge!("gatehouse_workers_running").increment(0.0);
    // 0 until a success is known: the stale-purge alert
    // (`time() - gatehouse_purge_last_success_timestamp_seconds > ...`)
    // then fires on a worker that never succeeded.
    metrics::gauge!("gatehouse_purge_last_success_timestamp_seconds").increment(0.0);
    metrics::gauge!("gatehouse_signing_key_age_seconds").increment(0.0);
    gatehouse_shared::rotation::init_metrics();
}
