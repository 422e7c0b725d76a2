// Written by hand to match both migration directories.

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        password_hash -> Text,
        is_admin -> Bool,
        disabled -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        scope -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        client_id -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> Text,
        parent_hash -> Nullable<Text>,
        created_at -> BigInt,
        rotated_at -> Nullable<BigInt>,
        rotation_nonce -> Nullable<Text>,
    }
}

diesel::table! {
    revocations (seq) {
        seq -> BigInt,
        kind -> SmallInt,
        subject -> Text,
        issued_before -> BigInt,
        expires_at -> BigInt,
        created_at -> BigInt,
        owner -> Nullable<Text>,
    }
}

diesel::table! {
    token_lifetimes (ttl_secs) {
        ttl_secs -> BigInt,
        announced_until -> BigInt,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        public_jwk -> Text,
        status -> Text,
        created_at -> BigInt,
        retired_at -> Nullable<BigInt>,
        sealed_private_jwk -> Nullable<Text>,
    }
}

diesel::table! {
    sealing_secrets (fingerprint) {
        fingerprint -> Text,
        last_seen -> BigInt,
    }
}

diesel::table! {
    lockouts_by_client (id) {
        id -> BigInt,
        user_id -> Text,
        client -> Text,
        failures -> Integer,
        window_start -> BigInt,
        locked_until -> BigInt,
        lock_count -> Integer,
        known_until -> BigInt,
    }
}

diesel::table! {
    client_failure_budgets (client) {
        client -> Text,
        paid_off_at -> BigInt,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        at -> BigInt,
        kind -> Text,
        user_id -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    sessions,
    refresh_tokens,
    revocations,
    signing_keys,
    lockouts_by_client,
    client_failure_budgets,
    audit_events,
    token_lifetimes,
    sealing_secrets
);
