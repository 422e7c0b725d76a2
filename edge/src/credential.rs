//! Where the request's token comes from: its bearer header, else the `TOKEN_COOKIE` cookie,
//! which a browser's cross-site write does not get to use.

use gatehouse_shared::{ErrorCode, bearer_token, trim_http_whitespace};

use crate::config::Config;
use crate::incoming::{Incoming, is_safe_method};

/// Where the request's token was read from.
#[derive(Clone, Copy)]
pub enum Credential {
    Bearer,
    Cookie,
}

/// The request's token: its bearer header, else the `TOKEN_COOKIE` cookie unless a browser sent
/// it cross-site to change state. For `/_gatehouse/check` (`forward_auth`), the method is the
/// one the proxy names (`X-Forwarded-Method`, as Traefik and Caddy send it, or
/// `X-Original-Method`, nginx's usual `auth_request` header): its own request is a `GET`, and
/// without either header, or with either naming a write, the request it guards is taken for a
/// write. Two copies of the cookie are `malformed`, as two `Authorization` headers are: the
/// origin may read the other one (a cookie planted from a sibling subdomain comes first).
pub fn token(
    req: &Incoming,
    config: &Config,
    forward_auth: bool,
) -> Result<(String, Credential), ErrorCode> {
    let authorization = req.header("authorization");
    if let Some(token) = bearer_token(authorization.as_deref()) {
        return Ok((token.to_owned(), Credential::Bearer));
    }
    let name = config
        .token_cookie
        .as_deref()
        .ok_or(ErrorCode::MissingToken)?;
    let safe = if forward_auth {
        proxy_names_a_safe_method(req)
    } else {
        is_safe_method(req.method())
    };
    if is_cross_site_write(req, safe) {
        return Err(ErrorCode::MissingToken);
    }
    let cookies = req.header("cookie").unwrap_or_default();
    let mut named = cookies.split(';').flat_map(|pair| copies(pair, name));
    match (named.next(), named.next()) {
        (Some(value), None) if !value.is_empty() => Ok((value.to_owned(), Credential::Cookie)),
        (Some(_), Some(_)) => Err(ErrorCode::Malformed),
        _ => Err(ErrorCode::MissingToken),
    }
}

/// The value of a cookie `pair` (`name=value`) named `name` as lenient origins read names
/// (ASP.NET ignores their case, others the spaces around them, PHP reads `.`, a space and `[`
/// as `_`: `gh.at` is its `gh_at`, and PHP before 7.4.11, Rack before 2.1.4 and ASP.NET Core
/// before 5.0 decode it as a form and end it at a NUL: `gh%5Fat`, `gh+at`, `gh_at%00x`;
/// `incoming::name_as_read`), so that no copy the origin may take goes uncounted. The value
/// loses only HTTP's whitespace around it, as a bearer token does.
fn cookie_value<'c>(pair: &'c str, name: &str) -> Option<&'c str> {
    let (k, v) = pair.split_once('=')?;
    // Reading a name only shortens it: a shorter one is not decoded (every pair of every
    // cookie-carrying request comes here).
    if k.len() < name.len() {
        return None;
    }
    let as_read = |b: u8| match b {
        b'.' | b' ' | b'[' => b'_',
        b => b.to_ascii_lowercase(),
    };
    crate::incoming::name_as_read(k.as_bytes())
        .into_iter()
        .map(as_read)
        .eq(name.bytes().map(as_read))
        .then(|| trim_http_whitespace(v))
}

/// The values of the copies of cookie `name` in one `;`-separated `pair` of a `Cookie` header:
/// the pair itself (`cookie_value`), and each part of it after a `,` or whitespace that names
/// it, which lenient origin parsers read as a pair of its own: RFC 2965's and Tomcat's legacy
/// parser split at `,` (as the runtime joins two `Cookie` lines), Python's `SimpleCookie` at
/// whitespace. `x=1 gh_at=t` is a copy of `gh_at` to them.
pub fn copies<'c>(pair: &'c str, name: &'c str) -> impl Iterator<Item = &'c str> + 'c {
    // The whitespace after the `;` that ends the pair before it starts no part.
    let parts = pair
        .trim_matches([' ', '\t'])
        .split([',', ' ', '\t'])
        .skip(1);
    cookie_value(pair, name)
        .into_iter()
        .chain(parts.filter_map(move |part| cookie_value(part, name)))
}

/// Whether a forward-auth proxy names a safe method for the request it guards. One that names
/// none is taken to ask about a write: the check's own `GET` says nothing about that request.
/// nginx's `auth_request` passes the client's own headers on, so a client can send the header
/// nginx does not set: a write named by either header wins over a safe method named by the
/// other.
fn proxy_names_a_safe_method(req: &Incoming) -> bool {
    let named = crate::forwarded::named_methods(req);
    named.iter().any(Option::is_some) && named.iter().flatten().all(|m| is_safe_method(m))
}

/// Whether a browser sent this request from another site with a method that changes state
/// (not `safe_method`), or to open a WebSocket (a `GET` whose socket then acts for the user): a
/// token from `TOKEN_COOKIE` is then not read, as a `SameSite` cookie would not have been sent
/// (cross-site request forgery). `Sec-Fetch-Site` decides where the browser sends it; else an
/// `Origin` other than the request's own; a request with neither (not a browser) is not
/// cross-site. A bearer header is never sent by a browser on its own, so it is not affected.
fn is_cross_site_write(req: &Incoming, safe_method: bool) -> bool {
    // A forward-auth proxy drops `Upgrade` (hop-by-hop) before asking; `Sec-WebSocket-Key`
    // is end-to-end and goes with every WebSocket handshake.
    let opens_a_socket =
        req.header("upgrade").is_some() || req.header("sec-websocket-key").is_some();
    if safe_method && !opens_a_socket {
        return false;
    }
    if let Some(site) = req.header("sec-fetch-site") {
        return !matches!(site.as_str(), "same-origin" | "none");
    }
    req.header("origin").is_some_and(|origin| {
        !req.url
            .strip_prefix(origin.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::copies;

    #[test]
    fn a_copy_is_counted_wherever_a_lenient_parser_finds_one() {
        let found = |pair| copies(pair, "gh_at").collect::<Vec<_>>();
        assert_eq!(found(" gh_at=t "), ["t"]);
        assert_eq!(found("\t gh_at=t"), ["t"]);
        assert_eq!(found("Gh.At = t"), ["t"]);
        // PHP reads a space in a name as `_`: still the whole pair's copy, counted once.
        assert_eq!(found("gh at=t"), ["t"]);
        assert_eq!(found("x=1 gh_at=t"), ["t"]);
        assert_eq!(found("x=1,gh_at=t"), ["t"]);
        assert_eq!(found("x=1\tgh_at=t"), ["t"]);
        // Decoded as old PHP, Rack and ASP.NET Core read names.
        assert_eq!(found("gh%5Fat=t"), ["t"]);
        assert_eq!(found("GH%2eAT=t"), ["t"]);
        assert_eq!(found("%20gh_at=t"), ["t"]);
        assert_eq!(found("gh_at%00x=t"), ["t"]);
        // A malformed escape is read as sent.
        assert!(found("gh%5Gat=t").is_empty());
        assert_eq!(found("gh_at=t gh_at=u"), ["t gh_at=u", "u"]);
        assert_eq!(found("gh_at=t, y=2"), ["t, y=2"]);
        assert!(found("theme=dark").is_empty());
        assert!(found("x=gh_at=t").is_empty());
    }
}
