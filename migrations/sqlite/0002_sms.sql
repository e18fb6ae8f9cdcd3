-- The SMS channel: receipt texts sent from the "receipt" outbox, and the delivery receipts the
-- SMSC reports for them. A receipt is recorded here in the same transaction that marks its
-- outbox row delivered, so a receipt id is sent (accepted by the SMSC) at most once per record.
CREATE TABLE sms_receipts (
    receipt_id   TEXT PRIMARY KEY,
    outbox_id    BIGINT NOT NULL,
    msisdn       TEXT NOT NULL,
    parts        BIGINT NOT NULL,
    submitted_ms BIGINT NOT NULL,
    dlr_state    TEXT,
    dlr_error    TEXT,
    dlr_ms       BIGINT
);

-- The SMSC's message id of each part; an SMSC may reuse ids after a restart, so the newest
-- submission of an id is the one a delivery receipt refers to.
CREATE TABLE sms_receipt_parts (
    message_id   TEXT NOT NULL,
    receipt_id   TEXT NOT NULL,
    part         BIGINT NOT NULL,
    submitted_ms BIGINT NOT NULL,
    PRIMARY KEY (receipt_id, part)
);
CREATE INDEX sms_receipt_parts_message ON sms_receipt_parts (message_id, submitted_ms);
