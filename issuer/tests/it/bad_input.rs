//! Anything a client can send gets a 4xx with a stable code, never a 5xx.

use rocket::http::{ContentType, Header, Status};

use crate::common::{Backend, TestApp, decode, str_of};

async fn hostile_requests_get_clear_4xx(backend: Backend) {
    let app = TestApp::start(backend).await;
    let big = format!(
        "grant_type=password&username=a&password={}",
        "x".repeat(80 * 1024)
    );
    type Case = (
        &'static str,
        Option<ContentType>,
        Vec<u8>,
        Status,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        // The OAuth endpoints answer RFC 6749 §5.2's `invalid_request`, which OAuth clients
        // know; the others keep 413 and 415.
        (
            "/v1/token",
            Some(ContentType::Form),
            big.clone().into_bytes(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/users",
            Some(ContentType::Form),
            big.into_bytes(),
            Status::PayloadTooLarge,
            "payload_too_large",
        ),
        (
            "/v1/token",
            Some(ContentType::Plain),
            b"grant_type=password".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/revoke",
            Some(ContentType::Plain),
            b"token=x".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/users",
            Some(ContentType::Plain),
            b"username=x".to_vec(),
            Status::UnsupportedMediaType,
            "unsupported_media_type",
        ),
        // Another charset than UTF-8 would be read as other text than the client meant (a
        // password among it); said as UTF-8, in any case or quoted, it is read.
        (
            "/v1/users",
            Some(
                ContentType::new("application", "x-www-form-urlencoded")
                    .with_params(("charset", "windows-1252")),
            ),
            b"username=x&password=caf%C3%A9-caf%C3%A9".to_vec(),
            Status::UnsupportedMediaType,
            "unsupported_media_type",
        ),
        (
            "/v1/users",
            Some(ContentType::new("application", "json").with_params(("charset", "iso-8859-1"))),
            b"{}".to_vec(),
            Status::UnsupportedMediaType,
            "unsupported_media_type",
        ),
        (
            "/v1/users",
            Some(ContentType::new("application", "json").with_params(("charset", "\"UTF-8\""))),
            b"{}".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/users",
            Some(ContentType::new("application", "json").with_params(("charset", "utf8"))),
            b"{}".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/token",
            Some(
                ContentType::new("application", "x-www-form-urlencoded")
                    .with_params(("charset", "utf-16")),
            ),
            b"grant_type=password&username=a&password=b".to_vec(),
            Status::BadRequest,
            "invalid_request",
        ),
        (
            "/v1/token",
            None,
            b"grant_type=password".to_vec(),
            Status::BadRequest,
            "invalid_request",
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
    // `/v1/introspect` is an OAuth endpoint too (RFC 7662), behind an admin's bearer.
    let admin = app.admin_token().await;
    let oversized = format!("token={}", "x".repeat(80 * 1024));
    for (ct, body) in [
        (ContentType::Plain, "token=x".to_owned()),
        (ContentType::Form, oversized),
    ] {
        let request = app
            .client
            .post("/v1/introspect")
            .header(ct.clone())
            .header(Header::new("Authorization", format!("Bearer {admin}")))
            .body(body);
        let (status, json, _) = decode(request.dispatch().await).await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, "invalid_request"),
            "/v1/introspect {ct}: {json}"
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

/// A form's percent-escapes that decode to bytes which are not UTF-8 are refused, as a raw
/// body that is not UTF-8 is. Before, they became U+FFFD, so `%E9t%E9` and `%FFt%FF` were the
/// same password.
async fn forms_that_decode_to_invalid_utf8_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    for (path, body) in [
        (
            "/v1/users",
            "username=mallory&password=%E9t%E9-plover-quartz",
        ),
        ("/v1/users", "username=mallory&pass%FFword=plover-quartz-7"),
        (
            "/v1/token",
            "grant_type=password&username=alice&password=%FFt%FF-plover",
        ),
        (
            "/v1/token",
            "grant_type=password&username=alice%C3&password=x",
        ),
    ] {
        let (status, json) = app.send("POST", path, Some(body), None).await;
        assert_eq!(
            (
                status,
                str_of(&json, "error"),
                str_of(&json, "error_description")
            ),
            (
                Status::BadRequest,
                "invalid_request",
                "the form body is not UTF-8 once decoded"
            ),
            "{path} {body}: {json}"
        );
    }
    // Escapes of UTF-8, `+` for a space and a `%` that starts no escape still decode.
    let password = "%C3%A9t%C3%A9+plover%zz";
    let body = format!("username=bob&password={password}");
    let (status, json) = app.send("POST", "/v1/users", Some(&body), None).await;
    assert_eq!(status, Status::Created, "{json}");
    let login = r#"{"grant_type":"password","username":"bob","password":"été plover%zz"}"#;
    let (status, json) = app.send("POST", "/v1/token", Some(login), None).await;
    assert_eq!(status, Status::Ok, "{json}");
}

/// `error_description` is our own words: it may name a field, never repeat what the client
/// sent in one (a password, typed into the wrong field or with the wrong quotes).
async fn error_descriptions_never_repeat_the_client_s_values(backend: Backend) {
    let app = TestApp::start(backend).await;
    let cases = [
        (
            "/v1/users",
            r#"{"username":"alice","password":12345678}"#,
            "field `password` must be a string",
        ),
        (
            "/v1/users",
            r#"{"username":["hunter2"],"password":"x"}"#,
            "field `username` must be a string",
        ),
        (
            "/v1/token",
            r#"{"grant_type":"password","username":"a","password":{"hunter2":1}}"#,
            "field `password` must be a string",
        ),
        (
            "/v1/users",
            r#"{"password":"hunter2"}"#,
            "missing field `username`",
        ),
        (
            "/v1/users",
            r#"{"username":"alice","password":"hunter2","password":"hunter2"}"#,
            "field `password` is given more than once",
        ),
        (
            "/v1/users",
            r#"{"password":"hunter2" 12345678}"#,
            "invalid JSON body",
        ),
        (
            "/v1/users",
            r#"["hunter2"]"#,
            "the JSON body must be an object",
        ),
        (
            "/v1/users",
            r#""hunter2""#,
            "the JSON body must be an object",
        ),
    ];
    for (path, body, description) in cases {
        let request = app.client.post(path).header(ContentType::JSON).body(body);
        let (status, json, _) = decode(request.dispatch().await).await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, "invalid_request"),
            "{body}: {json}"
        );
        assert_eq!(str_of(&json, "error_description"), description, "{body}");
        let text = json.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("12345678"),
            "{body}: {text}"
        );
    }
}

/// Two `Authorization` headers are refused as the edge refuses them: its runtime reads them
/// joined (`Bearer a, Bearer b`), which is no token. Before, the issuer took the first.
async fn the_authorization_header_is_read_as_at_the_edge(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let token = str_of(&app.login("alice").await, "access_token").to_owned();
    let bearer = || Header::new("Authorization", format!("Bearer {token}"));
    let response = app.client.get("/v1/me").header(bearer()).header(bearer());
    let (status, json, _) = decode(response.dispatch().await).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "malformed"),
        "{json}"
    );
    assert_eq!(app.me(&token).await.0, Status::Ok, "one header is read");
    // A Unicode space after the token is part of it (HTTP's whitespace is space and tab), so
    // the token is not the one signed. Before, any Unicode whitespace was trimmed.
    for (tail, code) in [
        ("\u{a0}", "malformed"),
        ("\u{3000}", "malformed"),
        (" \t", ""),
    ] {
        let header = Header::new("Authorization", format!("Bearer {token}{tail}"));
        let response = app.client.get("/v1/me").header(header);
        let (status, json, _) = decode(response.dispatch().await).await;
        let expected = if code.is_empty() {
            Status::Ok
        } else {
            Status::Unauthorized
        };
        assert_eq!(status, expected, "{tail:?}: {json}");
        if !code.is_empty() {
            assert_eq!(str_of(&json, "code"), code, "{tail:?}");
        }
    }
}

/// Every answer carries `X-Request-Id`: the proxy's when it sent one made of the characters of
/// ids, else one made here, another for each request; a client's arbitrary text never becomes
/// one (it would reach the log of an internal error).
async fn every_answer_names_its_request(backend: Backend) {
    let app = TestApp::start(backend).await;
    let id_sent = |sent: Option<&'static str>| {
        let mut request = app.client.get("/health/live");
        if let Some(sent) = sent {
            request = request.header(Header::new("X-Request-Id", sent));
        }
        async move {
            let response = request.dispatch().await;
            let id = response
                .headers()
                .get_one("X-Request-Id")
                .map(str::to_owned);
            id.unwrap_or_else(|| panic!("no X-Request-Id"))
        }
    };
    let (first, second) = (id_sent(None).await, id_sent(None).await);
    assert_ne!(first, second);
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(id_sent(Some(trace)).await, trace);
    for hostile in ["a b", "<script>", "id\"x", ""] {
        let made = id_sent(Some(hostile)).await;
        assert!(made != hostile && !made.is_empty(), "{hostile:?}: {made}");
    }
    // Refusals and unknown paths too.
    let response = app.client.get("/no/such/route").dispatch().await;
    assert_eq!(response.status(), Status::NotFound);
    assert!(response.headers().get_one("X-Request-Id").is_some());
}

crate::on_both_backends!(
    every_answer_names_its_request,
    hostile_requests_get_clear_4xx,
    forms_that_decode_to_invalid_utf8_are_refused,
    error_descriptions_never_repeat_the_client_s_values,
    the_authorization_header_is_read_as_at_the_edge,
);
