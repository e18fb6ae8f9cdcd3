//! The HTTP merchant API over real sockets: errors, idempotency, SSE, sandbox, webhooks, portraits.

mod common;

use common::*;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use telepay::metrics::Metrics;
use telepay::settlement::auth_policy::{MerchantDemand, Method};
use telepay::settlement::engine::{NewMerchant, Op};
use telepay::store::Backend;

struct Api {
    env: Env,
    base: String,
    http: reqwest::Client,
}

async fn start(tag: &str) -> Api {
    let env = Env::new(Backend::Sqlite, tag).await;
    let metrics = Arc::new(Metrics::default());
    let app = telepay::merchant::http::router(telepay::merchant::http::AppState {
        svc: env.svc.clone(),
        metrics: metrics.clone(),
        demo: true,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    telepay::merchant::webhooks::spawn(env.svc.clone(), metrics, Duration::from_secs(5));
    Api {
        env,
        base,
        http: reqwest::Client::new(),
    }
}

impl Api {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let r = self
            .req(method, path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_have_stable_codes_and_write_nothing() {
    let api = start("errors").await;
    use reqwest::Method as M;
    // No key, a wrong key.
    let r = api
        .http
        .post(format!("{}/v1/transactions", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers().get("www-authenticate").unwrap(), "Bearer");
    let r = api
        .http
        .post(format!("{}/v1/transactions", api.base))
        .bearer_auth("nope-nope-nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let cases = [
        ("{\"amount_minor\": 12", 400, "malformed_json"),
        ("[1,2]", 400, "invalid_field"),
        (
            "{\"amount_minor\": 100, \"colour\": \"red\"}",
            400,
            "unknown_field",
        ),
        ("{\"amount_minor\": 0}", 400, "invalid_amount"),
        ("{\"amount_minor\": -5}", 400, "invalid_amount"),
        ("{\"amount_minor\": 12.5}", 400, "invalid_amount"),
        ("{\"amount_minor\": \"100\"}", 400, "invalid_amount"),
        (
            "{\"amount_minor\": 100000000000000000000}",
            400,
            "invalid_amount",
        ),
        ("{\"amount_minor\": 1000000000000}", 400, "amount_too_large"),
        (
            "{\"amount_minor\": 100, \"currency\": \"XXX\"}",
            400,
            "unknown_currency",
        ),
        (
            "{\"amount_minor\": 100, \"currency\": \"dollars\"}",
            400,
            "unknown_currency",
        ),
        (
            "{\"amount_minor\": 100, \"currency\": \"EUR\"}",
            400,
            "currency_mismatch",
        ),
    ];
    for (body, status, want) in cases {
        let (s, v) = api.json(M::POST, "/v1/transactions", body).await;
        assert_eq!((s, code(&v)), (status, want), "body {body}");
    }
    assert_eq!(
        api.env
            .count("SELECT CAST(COUNT(*) AS BIGINT) FROM transactions")
            .await,
        0
    );
    // Unknown and foreign transactions read alike.
    let (s, v) = api
        .json(M::GET, "/v1/transactions/tx_doesnotexist", "")
        .await;
    assert_eq!((s, code(&v)), (404, "transaction_not_found"));
    let (s, v) = api.json(M::GET, "/v1/transactions/..%2F..%2Fetc", "").await;
    assert_eq!((s, code(&v)), (404, "transaction_not_found"));
    api.env
        .merchant(
            "OTHER001",
            "OTHERMERCHANT01",
            "other-key-0123456",
            Method::Pin,
            false,
        )
        .await;
    let (_, t) = api.json(M::POST, "/v1/transactions", "{}").await;
    let id = t["id"].as_str().unwrap().to_string();
    let r = api
        .http
        .get(format!("{}/v1/transactions/{id}", api.base))
        .bearer_auth("other-key-0123456")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // State errors.
    let (s, v) = api
        .json(M::POST, &format!("/v1/transactions/{id}/reverse"), "")
        .await;
    assert_eq!((s, code(&v)), (409, "not_settled"));
    let (s, v) = api
        .json(
            M::PUT,
            &format!("/v1/transactions/{id}/amount"),
            "{\"amount_minor\": -1}",
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_amount"));
    let (s, _) = api
        .json(M::POST, &format!("/v1/transactions/{id}/cancel"), "")
        .await;
    assert_eq!(s, 200);
    let (s, v) = api
        .json(
            M::PUT,
            &format!("/v1/transactions/{id}/amount"),
            "{\"amount_minor\": 5}",
        )
        .await;
    assert_eq!((s, code(&v)), (409, "invalid_state"));
    // An unknown route.
    let (s, v) = api.json(M::GET, "/v2/nothing", "").await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    api.env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_key_replays_and_conflicts() {
    let api = start("idem").await;
    let send = |body: &'static str| {
        api.req(reqwest::Method::POST, "/v1/transactions")
            .header("idempotency-key", "order-77")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r1 = send("{\"amount_minor\": 1500}").await.unwrap();
    assert_eq!(r1.status(), 201);
    let a: serde_json::Value = r1.json().await.unwrap();
    // The same body with other spacing is the same request.
    let r2 = send("{ \"amount_minor\" : 1500 }").await.unwrap();
    assert_eq!(r2.status(), 200);
    assert_eq!(r2.headers().get("idempotent-replayed").unwrap(), "true");
    let b: serde_json::Value = r2.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["number"], b["number"]);
    let r3 = send("{\"amount_minor\": 1600}").await.unwrap();
    assert_eq!(r3.status(), 409);
    let c: serde_json::Value = r3.json().await.unwrap();
    assert_eq!(code(&c), "idempotency_key_reused");
    assert_eq!(
        api.env
            .count("SELECT CAST(COUNT(*) AS BIGINT) FROM transactions")
            .await,
        1
    );
    api.env.cleanup().await;
}

/// Reads server-sent events until the stream ends; returns the event names.
async fn sse_names(resp: reqwest::Response) -> Vec<String> {
    let mut names = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            for line in block.lines() {
                if let Some(n) = line
                    .strip_prefix("event: ")
                    .or_else(|| line.strip_prefix("event:"))
                {
                    names.push(n.trim().to_string());
                }
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_web_shop_payment_with_live_events_and_the_sandbox() {
    let api = start("sse").await;
    use reqwest::Method as M;
    // The vending-machine order: no amount yet.
    let (s, t) = api
        .json(M::POST, "/v1/transactions", "{\"description\": \"snack\"}")
        .await;
    assert_eq!(s, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    let number = t["number"].as_str().unwrap().to_string();
    assert_eq!(number.len(), 9);
    assert!(t["expires_at"].as_str().unwrap().ends_with('Z'));
    let sse = api
        .req(M::GET, &format!("/v1/transactions/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let names = tokio::spawn(sse_names(sse));
    let pay = {
        let http = api.http.clone();
        let url = format!("{}/sandbox/pay", api.base);
        let body =
            serde_json::json!({"msisdn": PAYER, "number": number, "pin": PIN, "confirm": true});
        tokio::spawn(async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        })
    };
    // The sandbox waits for the amount.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = api
            .json(M::GET, &format!("/v1/transactions/{id}"), "")
            .await;
        if v["state"] == "paired" {
            assert_eq!(v["payer"]["name"], "Payer +15550100");
            assert_eq!(
                v["payer"]["attributes"],
                serde_json::json!({"age_over_18": "true"})
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never paired: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = api
        .json(
            M::PUT,
            &format!("/v1/transactions/{id}/amount"),
            "{\"amount_minor\": 250, \"currency\": \"USD\"}",
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let out = pay.await.unwrap();
    assert_eq!(out["outcome"], "settled", "{out}");
    assert_eq!(out["auth_code"].as_str().unwrap().len(), 6);
    let names = names.await.unwrap();
    assert_eq!(
        names,
        [
            "ISSUED",
            "PAIRED",
            "AMOUNT_SET",
            "AUTHENTICATING",
            "AUTH_STEP_PASSED",
            "CONFIRMED",
            "SETTLED"
        ]
    );
    // Reversal over HTTP, then the ledger.
    let (s, v) = api
        .json(M::POST, &format!("/v1/transactions/{id}/reverse"), "")
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("reversed")));
    api.env.assert_ledger_sound().await;
    // A refused payment through the sandbox: cancel.
    let (_, t) = api
        .json(M::POST, "/v1/transactions", "{\"amount_minor\": 100}")
        .await;
    let body = serde_json::json!({"msisdn": PAYER, "number": t["number"], "confirm": false});
    let out: serde_json::Value = api
        .http
        .post(format!("{}/sandbox/pay", api.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["outcome"], "cancelled");
    // A bad check digit through the sandbox.
    let body = serde_json::json!({"msisdn": PAYER, "number": "123456789", "pin": PIN});
    let r = api
        .http
        .post(format!("{}/sandbox/pay", api.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code(&v), "invalid_number");
    api.env.cleanup().await;
}

#[derive(Default)]
struct Received {
    /// (event id, signature header, body) of every delivery attempt that got a 2xx.
    ok: Vec<(String, String, String)>,
    attempts: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_are_signed_retried_and_delivered() {
    let api = start("hooks").await;
    let got = Arc::new(Mutex::new(Received::default()));
    let recv = {
        let got = got.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let got = got.clone();
                async move {
                    let mut g = got.lock().unwrap();
                    g.attempts += 1;
                    // Fail every first attempt so retries are exercised.
                    if g.attempts % 2 == 1 {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let id = headers
                        .get("telepay-event-id")
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_string();
                    let sig = headers
                        .get("telepay-signature")
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_string();
                    g.ok.push((id, sig, body));
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, recv).await });
    api.env
        .svc
        .add_merchant(NewMerchant {
            terminal_id: "HOOK0001".into(),
            merchant_id: "HOOKMERCHANT001".into(),
            name: "Hook Shop".into(),
            currency: "USD".into(),
            api_key: "hook-key-0123456789".into(),
            demand: MerchantDemand {
                method: Method::Pin,
                strict: false,
            },
            visible_attributes: vec![],
            webhook_url: Some(hook_url),
            webhook_secret: Some("whsec_test".into()),
            account_id: None,
        })
        .await
        .unwrap();
    let svc = &api.env.svc;
    let (t, _) = svc
        .open(
            "HOOK0001",
            Some(400),
            None,
            telepay::settlement::lifecycle::Origin::Http,
            None,
            None,
        )
        .await
        .unwrap();
    let c = svc
        .claim(
            PAYER,
            &t.number,
            telepay::settlement::engine::PayerChannel::Call,
        )
        .await
        .unwrap();
    svc.submit_pin(
        PAYER,
        &c.txn.id,
        telepay::settlement::credentials::SecretDigits::pin(PIN).unwrap(),
    )
    .await
    .unwrap();
    svc.confirm(PAYER, &c.txn.id).await.unwrap();
    // ISSUED, AMOUNT_SET, PAIRED, AUTHENTICATING, AUTH_STEP_PASSED, CONFIRMED, SETTLED.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        api.env.clock.advance_ms(2_000); // let backoffs pass in virtual time
        if got.lock().unwrap().ok.len() >= 7 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhooks not delivered: {}",
            got.lock().unwrap().ok.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let g = std::mem::take(&mut *got.lock().unwrap());
    assert!(
        g.attempts >= 14,
        "every first attempt failed and was retried ({} attempts)",
        g.attempts
    );
    let mut ids: Vec<&str> = g.ok.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7, "each event delivered: {ids:?}");
    for (id, sig, body) in &g.ok {
        let t_s: i64 = sig
            .split(',')
            .next()
            .unwrap()
            .trim_start_matches("t=")
            .parse()
            .unwrap();
        assert_eq!(
            sig,
            &telepay::merchant::webhooks::signature("whsec_test", t_s, body),
            "signature of {id}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["id"], id.as_str());
    }
    assert!(g.ok.iter().any(|(_, _, b)| b.contains("\"SETTLED\"")));
    assert_eq!(
        api.env.svc.store().outbox_pending("webhook").await.unwrap(),
        0
    );
    api.env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn portrait_links_work_once_and_the_merchant_decides() {
    let api = start("portrait").await;
    use reqwest::Method as M;
    api.env
        .merchant(
            "VISUAL01",
            "VISUALMERCHANT1",
            "visual-key-0123456",
            Method::Visual,
            false,
        )
        .await;
    api.env
        .svc
        .submit(Op::SetPortrait {
            msisdn: PAYER.into(),
            content_type: "image/jpeg".into(),
            image: vec![0xFF, 0xD8, 0xFF, 0xE0, 9, 9],
        })
        .await
        .unwrap();
    let r = api
        .http
        .post(format!("{}/v1/transactions", api.base))
        .bearer_auth("visual-key-0123456")
        .json(&serde_json::json!({"amount_minor": 100}))
        .send()
        .await
        .unwrap();
    let t: serde_json::Value = r.json().await.unwrap();
    let id = t["id"].as_str().unwrap().to_string();
    let c = api
        .env
        .svc
        .claim(
            PAYER,
            t["number"].as_str().unwrap(),
            telepay::settlement::engine::PayerChannel::Call,
        )
        .await
        .unwrap();
    let ev = api.env.svc.store().events(&c.txn, 0).await.unwrap();
    let url = ev
        .iter()
        .find_map(|e| match &e.kind {
            telepay::settlement::lifecycle::EventKind::Paired { portrait_url, .. } => {
                portrait_url.clone()
            }
            _ => None,
        })
        .unwrap();
    let path = url.strip_prefix("http://gw.test").unwrap();
    let r = api
        .http
        .get(format!("{}{path}", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("content-type").unwrap(), "image/jpeg");
    assert_eq!(r.bytes().await.unwrap().len(), 6);
    let r = api
        .http
        .get(format!("{}{path}", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let r = api
        .http
        .get(format!("{}/v1/portraits/not-a-token", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let r = api
        .http
        .post(format!("{}/v1/transactions/{id}/visual-check", api.base))
        .bearer_auth("visual-key-0123456")
        .json(&serde_json::json!({"matched": true}))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["authentication"]["passed"], serde_json::json!(["visual"]));
    let t = api.env.svc.confirm(PAYER, &id).await.unwrap();
    assert_eq!(t.state, telepay::settlement::lifecycle::TxnState::Settled);
    let _ = M::GET;
    api.env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_metrics_and_health() {
    let api = start("meta").await;
    let doc: serde_json::Value = api
        .http
        .get(format!("{}/openapi.json", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/v1/transactions",
        "/v1/transactions/{id}",
        "/v1/transactions/{id}/amount",
        "/v1/transactions/{id}/cancel",
        "/v1/transactions/{id}/reverse",
        "/v1/transactions/{id}/events",
        "/v1/portraits/{token}",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} documented");
    }
    let _ = api
        .json(reqwest::Method::POST, "/v1/transactions", "{}")
        .await;
    let m = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("telepay_writer_batches_total"));
    assert!(
        m.contains("telepay_http_requests_total{route=\"/v1/transactions\",status=\"201\"} 1"),
        "{m}"
    );
    let h: serde_json::Value = api
        .http
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    api.env.cleanup().await;
}
