//! The OpenAPI 3.1 description of the merchant API, served at `/openapi.json`.

use serde_json::{Value, json};

fn err_resp(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn txn_resp(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Transaction"}}}})
}

pub fn document() -> Value {
    let id_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,64}$"}});
    let std_errors = |extra: &[(&str, &str)]| {
        let mut m = serde_json::Map::new();
        m.insert("400".into(), err_resp("Bad request: malformed_json, unknown_field, invalid_field, invalid_amount, amount_too_large, unknown_currency, currency_mismatch"));
        m.insert(
            "401".into(),
            err_resp("unauthorized: missing or unknown API key"),
        );
        m.insert("403".into(), err_resp("merchant_suspended"));
        m.insert(
            "503".into(),
            err_resp("unavailable: the database cannot be reached; retry"),
        );
        for (code, desc) in extra {
            m.insert((*code).into(), err_resp(desc));
        }
        Value::Object(m)
    };
    let with = |ok: (&str, Value), errs: Value| {
        let mut m = errs.as_object().cloned().unwrap_or_default();
        m.insert(ok.0.into(), ok.1);
        Value::Object(m)
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "telepay merchant API",
            "version": "1",
            "description": "Open a transaction, show its number to the payer, and follow it as the payer pays by phone or text. Amounts are integers in minor units with an ISO 4217 currency. Every answer reports committed state: nothing is acknowledged before it is on disk."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/transactions": {"post": {
                "summary": "Open a transaction and get its number",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    "description": "Retries with the same key and body return the original transaction (200, Idempotent-Replayed: true); the same key with another body is 409 idempotency_key_reused."}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateTransaction"}}}},
                "responses": with(("201", txn_resp("Opened")), std_errors(&[("200", "Replayed by Idempotency-Key"), ("409", "idempotency_key_reused")]))
            }},
            "/v1/transactions/{id}": {"get": {
                "summary": "Read a transaction",
                "parameters": [id_param],
                "responses": with(("200", txn_resp("The transaction")), std_errors(&[("404", "transaction_not_found")]))
            }},
            "/v1/transactions/{id}/amount": {"put": {
                "summary": "Set the purchase amount (before or after pairing, claim 37)",
                "parameters": [id_param],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SetAmount"}}}},
                "responses": with(("200", txn_resp("Amount set")), std_errors(&[("404", "transaction_not_found"), ("409", "amount_fixed or invalid_state")]))
            }},
            "/v1/transactions/{id}/cancel": {"post": {
                "summary": "Cancel a transaction that is not settled",
                "parameters": [id_param],
                "responses": with(("200", txn_resp("Cancelled")), std_errors(&[("404", "transaction_not_found"), ("409", "invalid_state")]))
            }},
            "/v1/transactions/{id}/reverse": {"post": {
                "summary": "Reverse a settled transaction by a compensating transfer",
                "parameters": [id_param],
                "responses": with(("200", txn_resp("Reversed")), std_errors(&[("404", "transaction_not_found"), ("409", "not_settled")]))
            }},
            "/v1/transactions/{id}/visual-check": {"post": {
                "summary": "The merchant's verdict on the payer's portrait (claims 34-36)",
                "parameters": [id_param],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VisualCheck"}}}},
                "responses": with(("200", txn_resp("Recorded")), std_errors(&[("404", "transaction_not_found"), ("409", "not_an_authentication_step")]))
            }},
            "/v1/transactions/{id}/events": {"get": {
                "summary": "Server-sent events of a transaction: history, then live; ends after a final state",
                "parameters": [id_param, {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string"}},
                    {"name": "after", "in": "query", "required": false, "schema": {"type": "integer"}}],
                "responses": with(("200", json!({"description": "text/event-stream; each event has id = sequence number, event = type, data = JSON", "content": {"text/event-stream": {"schema": {"type": "string"}}}})), std_errors(&[("404", "transaction_not_found")]))
            }},
            "/v1/portraits/{token}": {"get": {
                "summary": "The payer's portrait, through a one-time link sent on pairing (claims 14-15)",
                "security": [],
                "parameters": [{"name": "token", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The image", "content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}, "410": err_resp("link_invalid: unknown, used or expired")}
            }},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "text/plain"}}}},
            "/healthz": {"get": {"summary": "Liveness and database reachability", "security": [], "responses": {"200": {"description": "ok"}, "503": {"description": "database unreachable"}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "The merchant terminal's API key"}},
            "schemas": {
                "CreateTransaction": {"type": "object", "additionalProperties": false, "properties": {
                    "amount_minor": {"type": "integer", "minimum": 1, "maximum": 999999999999i64, "description": "Optional: may be set later with PUT /amount"},
                    "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "Defaults to the merchant's currency"},
                    "description": {"type": "string", "maxLength": 140}}},
                "SetAmount": {"type": "object", "additionalProperties": false, "required": ["amount_minor"], "properties": {
                    "amount_minor": {"type": "integer", "minimum": 1, "maximum": 999999999999i64},
                    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}}},
                "VisualCheck": {"type": "object", "additionalProperties": false, "required": ["matched"], "properties": {
                    "matched": {"type": "boolean"}, "pin_fallback": {"type": "boolean", "default": false}}},
                "Transaction": {"type": "object", "required": ["id", "number", "state", "currency", "expires_at"], "properties": {
                    "id": {"type": "string"},
                    "number": {"type": "string", "description": "The transaction number to show the payer: random digits and a Damm check digit"},
                    "reference": {"type": "string", "description": "The gateway's reference (also ISO 8583 field 37)"},
                    "state": {"type": "string", "enum": ["issued", "paired", "authenticating", "confirmed", "settled", "expired", "cancelled", "declined", "reversed"]},
                    "amount_minor": {"type": ["integer", "null"]},
                    "currency": {"type": "string"},
                    "description": {"type": ["string", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "payer": {"type": ["object", "null"], "properties": {"name": {"type": "string"}, "attributes": {"type": "object", "additionalProperties": {"type": "string"}}}},
                    "authentication": {"type": "object", "properties": {
                        "method": {"type": ["string", "null"], "enum": ["challenge", "pin", "visual", "voice", null]},
                        "steps": {"type": "array", "items": {"type": "string"}},
                        "passed": {"type": "array", "items": {"type": "string"}}}},
                    "decline_reason": {"type": ["string", "null"], "enum": ["payer_unknown", "payer_suspended", "payer_locked", "merchant_suspended", "insufficient_funds", "auth_failed", "auth_refused_by_policy", "limit", null]},
                    "auth_code": {"type": ["string", "null"]}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Webhook": {"type": "object", "description": "POSTed to the merchant's webhook URL with header Telepay-Signature: t=UNIX_SECONDS,v1=HEX(HMAC-SHA256(secret, t + '.' + body)); retried with backoff until a 2xx", "properties": {
                    "id": {"type": "string", "description": "transaction id:sequence; deliveries are at least once, deduplicate by id"},
                    "type": {"type": "string"},
                    "created_ms": {"type": "integer"},
                    "transaction": {"type": "object"},
                    "data": {"type": "object"}}}
            }
        }
    })
}
