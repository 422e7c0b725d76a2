//! `X-Request-Id`: each request's id, taken from the proxy in front when it sends a usable one,
//! else made here, answered in the response and named in the issuer's log line of an internal
//! error, so that a client's report, the proxy's access log and the issuer's log meet.

use std::sync::atomic::{AtomicU64, Ordering};

use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Data, Request, Response};

const HEADER: &str = "X-Request-Id";
/// A proxy's id is taken up to this length, of the characters ids are made of (a UUID, a
/// trace id, `cf-ray`-like values); anything else is replaced, so no log line carries a client's
/// arbitrary text.
const MAX_LEN: usize = 128;

/// The id of the request it is cached on.
struct RequestId(String);

/// Ids made here: a random prefix per process, so replicas never repeat each other's, and a
/// count.
struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

fn usable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The request's id (empty only for a request this stage never saw).
pub fn of<'r>(request: &'r Request<'_>) -> &'r str {
    &request.local_cache(|| RequestId(String::new())).0
}

#[rocket::async_trait]
impl Fairing for RequestIds {
    fn info(&self) -> Info {
        Info {
            name: "Request ids",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let id = match req.headers().get_one(HEADER) {
            Some(sent) if usable(sent) => sent.to_owned(),
            _ => format!(
                "{}-{}",
                self.prefix,
                self.next.fetch_add(1, Ordering::Relaxed)
            ),
        };
        req.local_cache(|| RequestId(id));
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        res.set_header(Header::new(HEADER, of(req).to_owned()));
    }
}

pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Request ids", |rocket| async {
        match crate::ids::random(6) {
            Ok(prefix) => Ok(rocket.attach(RequestIds {
                prefix,
                next: AtomicU64::new(1),
            })),
            Err(e) => {
                tracing::error!(error = %e, "cannot draw the request ids' prefix");
                Err(rocket)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxys_id_is_taken_only_in_the_characters_of_ids() {
        for id in [
            "1",
            "5f0c-4e7a",
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
            "a.b:c_d",
        ] {
            assert!(usable(id), "{id}");
        }
        for id in ["", "a b", "a\"b", "é", "<script>", &"a".repeat(MAX_LEN + 1)] {
            assert!(!usable(id), "{id}");
        }
        assert!(usable(&"a".repeat(MAX_LEN)));
    }
}
