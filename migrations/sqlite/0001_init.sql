-- telepay schema, SQLite. Amounts are BIGINT minor units; times are BIGINT Unix milliseconds;
-- flags are BIGINT 0/1 (the same on both backends).

CREATE TABLE merchants (
    terminal_id        TEXT PRIMARY KEY,
    merchant_id        TEXT NOT NULL,
    name               TEXT NOT NULL,
    status             TEXT NOT NULL,
    currency           TEXT NOT NULL,
    api_key_hash       TEXT NOT NULL UNIQUE,
    auth_method        TEXT NOT NULL,
    auth_strict        BIGINT NOT NULL,
    visible_attributes TEXT NOT NULL,
    account_id         TEXT NOT NULL,
    webhook_url        TEXT,
    webhook_secret     TEXT,
    created_ms         BIGINT NOT NULL
);

CREATE TABLE payers (
    msisdn           TEXT PRIMARY KEY,
    display_name     TEXT NOT NULL,
    attributes       TEXT NOT NULL,
    status           TEXT NOT NULL,
    pin_hash         TEXT,
    auth_failures    BIGINT NOT NULL,
    preferred_method TEXT,
    refuses_visual   BIGINT NOT NULL,
    adds_pin         BIGINT NOT NULL,
    account_id       TEXT NOT NULL,
    txn_limit_minor  BIGINT,
    has_portrait     BIGINT NOT NULL,
    has_voice_print  BIGINT NOT NULL,
    created_ms       BIGINT NOT NULL
);

CREATE TABLE payer_questions (
    msisdn      TEXT NOT NULL,
    question_id BIGINT NOT NULL,
    question    TEXT NOT NULL,
    answer_hash TEXT NOT NULL,
    PRIMARY KEY (msisdn, question_id)
);

CREATE TABLE payer_portraits (
    msisdn       TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    image        BLOB NOT NULL
);

CREATE TABLE payer_voice_prints (
    msisdn   TEXT PRIMARY KEY,
    template BLOB NOT NULL
);

CREATE TABLE accounts (
    id                  TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    currency            TEXT NOT NULL,
    balance_minor       BIGINT NOT NULL,
    credit_limit_minor  BIGINT NOT NULL,
    overdraft_unlimited BIGINT NOT NULL
);

CREATE TABLE transactions (
    id             TEXT PRIMARY KEY,
    number         TEXT NOT NULL,
    reference      TEXT NOT NULL UNIQUE,
    terminal_id    TEXT NOT NULL,
    origin         TEXT NOT NULL,
    state          TEXT NOT NULL,
    currency       TEXT NOT NULL,
    amount_minor   BIGINT,
    payer_msisdn   TEXT,
    auth           TEXT NOT NULL,
    decline_reason TEXT,
    auth_code      TEXT,
    description    TEXT,
    created_ms     BIGINT NOT NULL,
    expires_ms     BIGINT NOT NULL,
    deadline_ms    BIGINT,
    updated_ms     BIGINT NOT NULL,
    seq            BIGINT NOT NULL
);
-- Partial indexes: a transaction enters and leaves each at most once, so the many updates of a
-- payment in flight touch no index but the primary key.
CREATE INDEX transactions_expiry ON transactions (expires_ms) WHERE state = 'issued';
CREATE INDEX transactions_deadline ON transactions (deadline_ms)
    WHERE state IN ('paired', 'authenticating');
CREATE INDEX transactions_history ON transactions (payer_msisdn, updated_ms)
    WHERE state IN ('settled', 'reversed');
CREATE INDEX transactions_terminal ON transactions (terminal_id, created_ms);

-- One row per number ever issued; a number is free again once reusable_ms has passed.
CREATE TABLE txn_numbers (
    number      TEXT PRIMARY KEY,
    txn_id      TEXT NOT NULL,
    reusable_ms BIGINT NOT NULL
);

CREATE TABLE events (
    txn_id TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    kind   TEXT NOT NULL,
    data   TEXT NOT NULL,
    at_ms  BIGINT NOT NULL,
    PRIMARY KEY (txn_id, seq)
);

CREATE TABLE transfers (
    id             TEXT PRIMARY KEY,
    txn_id         TEXT,
    kind           TEXT NOT NULL,
    debit_account  TEXT NOT NULL,
    credit_account TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    created_ms     BIGINT NOT NULL
);
-- At most one settlement and one reversal per transaction, whatever is retried.
CREATE UNIQUE INDEX transfers_once ON transfers (txn_id, kind) WHERE txn_id IS NOT NULL;

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT NOT NULL,
    target       TEXT NOT NULL,
    txn_id       TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    payload      TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_ms      BIGINT NOT NULL,
    lease_ms     BIGINT NOT NULL DEFAULT 0,
    delivered_ms BIGINT,
    last_error   TEXT,
    created_ms   BIGINT NOT NULL,
    UNIQUE (channel, txn_id, seq)
);
CREATE INDEX outbox_pending ON outbox (channel, target, id) WHERE delivered_ms IS NULL;

CREATE TABLE idempotency_keys (
    terminal_id  TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    txn_id       TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (terminal_id, key)
);

CREATE TABLE claim_failures (
    msisdn TEXT NOT NULL,
    at_ms  BIGINT NOT NULL
);
CREATE INDEX claim_failures_caller ON claim_failures (msisdn, at_ms);
CREATE INDEX claim_failures_at ON claim_failures (at_ms);

CREATE TABLE caller_blocks (
    msisdn   TEXT PRIMARY KEY,
    until_ms BIGINT NOT NULL
);

CREATE TABLE portrait_tokens (
    token      TEXT PRIMARY KEY,
    txn_id     TEXT NOT NULL,
    msisdn     TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used       BIGINT NOT NULL
);
