//! The request a forward-auth proxy asks `/_gatehouse/check` about: its path, from
//! `X-Forwarded-Uri` (Traefik, Caddy) or `X-Original-URI` (nginx's `auth_request`, with
//! `proxy_set_header X-Original-URI $request_uri;`), and its method, from `X-Forwarded-Method`
//! or `X-Original-Method`. A client can send the header its proxy does not set (nginx passes the
//! client's headers on), so each one sent is judged, and the stricter verdict wins.

use crate::config::Config;
use crate::incoming::{self, Incoming};
use crate::path;

const URI_HEADERS: [&str; 2] = ["x-forwarded-uri", "x-original-uri"];
const METHOD_HEADERS: [&str; 2] = ["x-forwarded-method", "x-original-method"];

/// What the check judges besides the token: the canonical path of each URI header sent, and
/// whether the request may act on everything under them.
pub struct Asked {
    pub paths: Vec<String>,
    pub acts_below: bool,
}

/// The methods the proxy names, as sent.
pub fn named_methods(req: &Incoming) -> [Option<String>; 2] {
    METHOD_HEADERS.map(|name| req.header(name))
}

/// The request asked about, or why it cannot be judged (400 `invalid_path`): a URI that is not
/// a path a request line holds, or one `path::canonical` refuses; no URI at all while
/// `ROUTE_SCOPES` is set (its scope could not be told, and the check would pass any token); a
/// `Destination` (WebDAV's `COPY` and `MOVE` name a second path, which the check does not
/// judge). A request whose method is not named is taken to act below its path, and to name a
/// `Destination`, as it is taken for a write (`credential`).
pub fn asked(req: &Incoming, config: &Config) -> Result<Asked, &'static str> {
    let mut asked = Asked {
        paths: Vec::new(),
        acts_below: false,
    };
    for uri in URI_HEADERS.iter().filter_map(|name| req.header(name)) {
        // Origin-form: `//host/…` would read as a host, and an absolute URI's host is not ours
        // to judge.
        if !uri.starts_with('/') || uri.starts_with("//") {
            return Err("the forwarded URI is not an absolute path");
        }
        let (path, query) = path::canonical_with_query(&uri)
            .map_err(|path::Refused| "the forwarded URI's path is ambiguous")?;
        asked.acts_below |= incoming::names_method_override(&query);
        asked.paths.push(path);
    }
    if asked.paths.is_empty() {
        if config.has_route_scopes() {
            return Err(
                "ROUTE_SCOPES is set: name the request's path in X-Forwarded-Uri or X-Original-URI",
            );
        }
        // No rule to judge a path by: the methods and a `Destination` do not matter.
        return Ok(asked);
    }
    let methods = named_methods(req);
    let unnamed = methods.iter().all(Option::is_none);
    let named = || methods.iter().flatten();
    asked.acts_below |= unnamed || named().any(|m| incoming::acts_below(m));
    let may_name_destination = unnamed || named().any(|m| incoming::names_destination(m));
    if may_name_destination && req.header("destination").is_some() {
        return Err("a Destination is not judged by the forward-auth check");
    }
    Ok(asked)
}
