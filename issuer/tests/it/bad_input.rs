//! Anything a client can send gets a 4xx with a stable code, never a 5xx.

use rocket::http::{ContentType, Header, Status};

use crate::common::{Backend, TestApp, decode, str_of};

async fn hostile_requests_get_clear_4xx(backend: Backend) {
    let app = TestApp::start(backend).await;
    let big = format!(
        "grant_type=password&username=a&password={}",
        "x".repeat(20 * 1024)
    );
    type Case = (
        &'static str,
        Option<ContentType>,
        Vec<u8>,
        Status,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "/v1/token",
            Some(ContentType::Form),
            big.into_bytes(),
            Status::PayloadTooLarge,
            "payload_too_large",
        ),
        (
            "/v1/token",
            Some(ContentType::Plain),
            b"grant_type=password".to_vec(),
            Status::UnsupportedMediaType,
            "unsupported_media_type",
        ),
        (
            "/v1/token",
            None,
            b"grant_type=password".to_vec(),
            Status::UnsupportedMediaType,
            "unsupported_media_type",
        ),
        (
            "/v1/token",
            Some(ContentType::JSON),
            b"{\"grant_type\":5}".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/token",
            Some(ContentType::JSON),
            b"[1,2".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/token",
            Some(ContentType::JSON),
            b"{\"grant_type\":\"password\",\"grant_type\":\"x\"}".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/token",
            Some(ContentType::Form),
            b"grant_type=%zz".to_vec(),
            Status::BadRequest,
            "unsupported_grant_type",
        ),
        (
            "/v1/token",
            Some(ContentType::Form),
            vec![0xff, 0xfe, 0x00],
            Status::BadRequest,
            "invalid_request",
        ),
        // RFC 6749 §3.1: a parameter sent empty is omitted, so required ones are missing (an
        // empty password no longer spends a lockout attempt as a wrong one).
        (
            "/v1/token",
            Some(ContentType::Form),
            b"grant_type=password&username=&password=".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/token",
            Some(ContentType::Form),
            b"grant_type=refresh_token&refresh_token=".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/users",
            Some(ContentType::JSON),
            b"{\"username\":null}".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/users",
            Some(ContentType::JSON),
            b"{}".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/nothing",
            Some(ContentType::JSON),
            b"{}".to_vec(),
            Status::NotFound,
            "not_found",
        ),
    ];
    for (path, ct, body, want_status, want_code) in cases {
        let body_dbg = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let mut request = app.client.post(path).body(body);
        if let Some(ct) = ct {
            request = request.header(ct);
        }
        let (status, json, _) = decode(request.dispatch().await).await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (want_status, want_code),
            "{path} {body_dbg}: {json}"
        );
    }
    // The shared bearer contract, as the edge answers it: no bearer token at all (another
    // scheme, or an empty one) is `missing_token` with a bare challenge; a bad one is named.
    let long = format!("Bearer {}", "A".repeat(100_000));
    for (auth, code) in [
        ("Bearer", "missing_token"),
        ("Bearer ", "missing_token"),
        ("Basic abc", "missing_token"),
        ("bearer a.b", "malformed"),
        (long.as_str(), "too_large"),
    ] {
        let response = app
            .client
            .get("/v1/me")
            .header(Header::new("Authorization", auth.to_owned()))
            .dispatch()
            .await;
        let (status, json, headers) = decode(response).await;
        assert_eq!(
            (status, str_of(&json, "error"), str_of(&json, "code")),
            (Status::Unauthorized, "invalid_token", code),
            "{auth:.20}"
        );
        let challenge = crate::common::header(&headers, "www-authenticate").unwrap();
        assert_eq!(
            challenge == "Bearer realm=\"gatehouse\"",
            code == "missing_token",
            "{challenge}"
        );
    }
    let (status, json, _) = decode(app.client.get("/v1/token").dispatch().await).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::NotFound, "not_found")
    );
}

crate::on_both_backends!(hostile_requests_get_clear_4xx);
