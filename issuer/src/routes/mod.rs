//! HTTP routes, one module per area, mounted by [`stage`].

mod account;
mod admin;
mod health;
mod token;
mod wellknown;

use rocket::fairing::AdHoc;
use rocket::http::Header;
use rocket::response::Responder;
use rocket::serde::json::Value;

/// `Cache-Control: no-store` and `Pragma: no-cache` on anything carrying credentials
/// (RFC 6749 §5.1).
#[derive(Responder)]
pub struct NoStore<T> {
    inner: T,
    cache_control: Header<'static>,
    pragma: Header<'static>,
}

impl<T> NoStore<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            cache_control: Header::new("Cache-Control", "no-store"),
            pragma: Header::new("Pragma", "no-cache"),
        }
    }
}

/// `answer` with the `client_id` a session or token names, when it names one: introspection
/// (RFC 7662 §2.2) and the `login_ok` audit detail alike.
fn naming_client(mut answer: Value, client_id: Option<String>) -> Value {
    if let (Some(client_id), Some(members)) = (client_id, answer.as_object_mut()) {
        members.insert("client_id".to_owned(), client_id.into());
    }
    answer
}

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Routes", |rocket| async {
        rocket
            .mount("/", token::routes())
            .mount("/", account::routes())
            .mount("/", admin::routes())
            .mount("/", wellknown::routes())
            .mount("/", health::routes())
            .register("/", crate::error::catchers())
    })
}
