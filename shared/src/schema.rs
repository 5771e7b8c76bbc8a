// @generated automatically by Diesel CLI.

diesel::table! {
    audit_events (id) {
        id -> Uuid,
        occurred_at -> Timestamptz,
        actor_id -> Nullable<Uuid>,
        subject_id -> Nullable<Uuid>,
        action -> Text,
        ip -> Nullable<Text>,
        details -> Jsonb,
    }
}

diesel::table! {
    email_changes (id) {
        id -> Uuid,
        user_id -> Uuid,
        old_email -> Text,
        new_email -> Text,
        requested_at -> Timestamptz,
        confirm_job_id -> Uuid,
        token_hash -> Nullable<Text>,
        code_hash -> Nullable<Text>,
        confirm_expires_at -> Nullable<Timestamptz>,
        code_attempts -> Int4,
        confirmed_at -> Nullable<Timestamptz>,
        notice_job_id -> Uuid,
        revert_hash -> Nullable<Text>,
        reverted_at -> Nullable<Timestamptz>,
        cancelled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    email_verifications (user_id) {
        user_id -> Uuid,
        code_hash -> Text,
        code_expires_at -> Timestamptz,
        link_hash -> Text,
        link_expires_at -> Timestamptz,
        attempts -> Int4,
        job_id -> Uuid,
        requested_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    job_runs (id) {
        id -> Uuid,
        trigger -> Text,
        scheduled_for -> Nullable<Timestamptz>,
        dry_run -> Bool,
        status -> Text,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        users_deleted -> Int8,
        sessions_deleted -> Int8,
        codes_deleted -> Int8,
        error -> Nullable<Text>,
        worker -> Text,
        requested_by -> Nullable<Uuid>,
        job -> Text,
        details -> Nullable<Jsonb>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Uuid,
        queue -> Text,
        payload -> Jsonb,
        user_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        enqueued_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        completed_at -> Nullable<Timestamptz>,
        claimed_at -> Nullable<Timestamptz>,
        claimed_by -> Nullable<Text>,
    }
}

diesel::table! {
    password_resets (user_id) {
        user_id -> Uuid,
        job_id -> Uuid,
        token_hash -> Nullable<Text>,
        expires_at -> Nullable<Timestamptz>,
        requested_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    revocations (cursor) {
        cursor -> Int8,
        sid -> Uuid,
        not_before -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        refresh_jti -> Uuid,
        previous_jti -> Nullable<Uuid>,
        rotated_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        not_before -> Int8,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        algorithm -> Text,
        state -> Text,
        public_jwk -> Jsonb,
        private_key -> Nullable<Bytea>,
        created_at -> Timestamptz,
        activated_at -> Nullable<Timestamptz>,
        deactivated_at -> Nullable<Timestamptz>,
        retired_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        first_name -> Nullable<Text>,
        last_name -> Nullable<Text>,
        role -> Text,
        is_verified -> Bool,
        verified_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        is_active -> Bool,
        reminded_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(email_changes -> users (user_id));
diesel::joinable!(email_verifications -> users (user_id));
diesel::joinable!(password_resets -> users (user_id));
diesel::joinable!(sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    email_changes,
    email_verifications,
    job_runs,
    outbox,
    password_resets,
    revocations,
    sessions,
    signing_keys,
    users,
);
