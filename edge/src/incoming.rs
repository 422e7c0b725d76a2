//! The request as the gate reads it: its URL, canonical path, query, method and headers read
//! once, and the second path a WebDAV `COPY` or `MOVE` names in `Destination`.

use gatehouse_shared::bearer_token;
use worker::web_sys::{Headers, Request};

use crate::path;

/// The request as the runtime hands it over, with its URL and headers read once. The hot path
/// stays on the runtime's own types: `worker::Request` would also read the method, the `cf`
/// object and the path into wasm for every request, whether or not anything looks at them.
pub struct Incoming {
    pub(crate) raw: Request,
    /// The URL as the runtime routed it: its host for `X-Forwarded-Host` and the `Origin` check.
    pub(crate) url: String,
    /// The canonical path (`crate::path`): what every rule matches and what the origin gets.
    path: String,
    /// `?query` as sent, or empty.
    pub(crate) query: String,
    method: String,
    /// Whether the request may act on everything under its path (`acts_below`).
    acts_below: bool,
    pub(crate) headers: Headers,
    /// `Destination`'s canonical path and its `?query`, for a `COPY` or `MOVE`.
    destination: Option<(String, String)>,
}

impl Incoming {
    /// Refuses a path, or a `Destination`, that origin routers could read differently from the
    /// gate, and a `Destination` on another host: the request comes back, for the refusal.
    pub fn new(raw: Request) -> Result<Self, Request> {
        let url = raw.url();
        let Ok((path, query)) = path::canonical_with_query(path_and_query(&url)) else {
            return Err(raw);
        };
        // Every protected request reads it (the preflight check), and a forward again.
        let method = raw.method();
        let headers = raw.headers();
        // Only the methods RFC 4918 defines it for: most requests pay no header lookup, and a
        // `POST` with a header of that name means nothing by it.
        let destination = if names_destination(&method) {
            let named = headers
                .get("destination")
                .ok()
                .flatten()
                .map(|value| path::destination(&value, authority(&url)))
                .transpose();
            let Ok(named) = named else {
                return Err(raw);
            };
            named
        } else {
            None
        };
        let acts_below = acts_below(&method) || names_method_override(&query);
        Ok(Self {
            raw,
            url,
            path,
            query,
            method,
            acts_below,
            headers,
            destination,
        })
    }

    /// The canonical path, without query or fragment.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The canonical path of a `COPY`'s or `MOVE`'s `Destination`: the scope rules apply to it
    /// as to `path`.
    pub fn destination_path(&self) -> Option<&str> {
        self.destination.as_ref().map(|(path, _)| path.as_str())
    }

    /// `Destination` for the origin: the origin's own URL of the canonical path, as the request
    /// itself is sent (a WebDAV server checks the destination's host against its own).
    pub fn destination_on(&self, origin_url: &str) -> Option<String> {
        let (path, query) = self.destination.as_ref()?;
        Some(format!("{origin_url}{path}{query}"))
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    /// Whether the request may act on everything under its path: by its method, or by the
    /// method its query names for the origin to run instead.
    pub fn acts_below(&self) -> bool {
        self.acts_below
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).ok().flatten()
    }

    /// Whether the request's bearer token is `secret`: `None` when it sends none.
    pub fn bearer_matches(&self, secret: Option<&crate::config::Secret>) -> Option<bool> {
        let authorization = self.header("authorization");
        let token = bearer_token(authorization.as_deref())?;
        Some(secret.is_some_and(|secret| secret.matches(token)))
    }

    /// The `worker` crate's request, for the control routes that read a body.
    pub fn into_worker(self) -> worker::Request {
        worker::Request::from(self.raw)
    }
}

/// Methods that do not change state (RFC 9110 §9.2.1).
pub fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// Whether a method names a second path in `Destination`: WebDAV's `COPY` and `MOVE`, in any
/// case (the Fetch standard upper-cases only its own methods, and an origin may not care).
pub fn names_destination(method: &str) -> bool {
    method.eq_ignore_ascii_case("COPY") || method.eq_ignore_ascii_case("MOVE")
}

/// Whether a method may act on everything under its path: `DELETE`, and every method outside
/// HTTP's own (WebDAV's `COPY`, `MOVE`, `PROPFIND`, `LOCK`, … act on a collection's members, to
/// any depth by default, RFC 4918 §9).
pub fn acts_below(method: &str) -> bool {
    !matches!(
        method,
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "OPTIONS"
    )
}

/// Whether `?query` names `_method`, which Laravel and Symfony (from the query as from a form)
/// and Express's `method-override('_method')` run a `POST` as: `?_method=DELETE` would act
/// below a path the gate judged as a `POST` on. Such a request is judged as one that acts below
/// (its method unknown to the gate). Names are read at least as loosely as PHP and Node's
/// `querystring` read them (`name_as_read`), a first `.` or `[` as `_`, anything from a `[` on
/// (`_method[]` is PHP's array; a repeated name is `querystring`'s, whose first item
/// `method-override` takes), and ASCII case ignored, which neither does. The form-body field is
/// the origin's to refuse (SECURITY.md).
pub fn names_method_override(query: &str) -> bool {
    // Reading a name only shortens it: one under 7 bytes as sent is no `_method`, and is not
    // decoded (most are short: the path is read on every request).
    query_pairs(query).any(|(name, _)| {
        if name.len() < 7 {
            return false;
        }
        let name = name_as_read(name);
        matches!(name.first(), Some(b'_' | b'.' | b'['))
            && name
                .get(1..7)
                .is_some_and(|m| m.eq_ignore_ascii_case(b"method"))
            && matches!(name.get(7), None | Some(b'['))
    })
}

/// Whether `?query` holds a token other than `token` under a name an origin may read as RFC
/// 6750's `access_token` (§2.3; ASP.NET Core reads it for `SignalR`, before the header): the
/// origin would act on a credential the gate never checked. Names are read more loosely than
/// any origin reads them (`name_as_read`, then case folded and all but letters and digits
/// dropped: `access.token`, `Access-Token`, `accessToken[]`), values decoded. A copy of the
/// checked token is harmless: the origin reads the same token.
pub fn names_another_access_token(query: &str, token: &str) -> bool {
    query_pairs(query).any(|(name, value)| {
        // As for `_method`: under 11 bytes as sent, it is no `accesstoken`.
        if name.len() < 11 {
            return false;
        }
        let mut name = name_as_read(name);
        name.retain(u8::is_ascii_alphanumeric);
        name.eq_ignore_ascii_case(b"accesstoken") && form_decoded(value) != token.as_bytes()
    })
}

/// The `name` and `value` of each pair of `?query`, as sent; pairs are split at `&` and at `;`,
/// which some servers split at too.
fn query_pairs(query: &str) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .as_bytes()
        .split(|&b| matches!(b, b'?' | b'&' | b';'))
        .map(|pair| {
            let at = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
            let (name, value) = pair.split_at(at);
            (name, value.get(1..).unwrap_or_default())
        })
}

/// A query or cookie name as the loosest origins read it: decoded (`form_decoded`), cut at a
/// NUL (PHP ends a name there: `access_token%00x` is its `access_token`), and without the
/// whitespace around it.
pub fn name_as_read(raw: &[u8]) -> Vec<u8> {
    let mut name = form_decoded(raw);
    name.truncate(name.iter().position(|&b| b == 0).unwrap_or(name.len()));
    name.trim_ascii().to_vec()
}

/// `raw` as a form decoder reads it: each `%XX` escape as its byte, `+` as a space.
fn form_decoded(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let escaped = raw
            .get(i + 1..i + 3)
            .and_then(path::hex_byte)
            .filter(|_| b == b'%');
        out.push(escaped.unwrap_or(if b == b'+' { b' ' } else { b }));
        i += if escaped.is_some() { 3 } else { 1 };
    }
    out
}

/// The `host[:port]` of an absolute URL.
pub fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    rest.get(..end).unwrap_or_default()
}

/// `/path?query` of the absolute URL the runtime hands over (already normalised by it), without
/// a fragment. Plain string work: the url crate's parser would cost ~40 KB of worker size.
fn path_and_query(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = url.get(after_scheme..).unwrap_or_default();
    let from_path = rest.find('/').map_or("/", |i| rest.get(i..).unwrap_or("/"));
    from_path.split('#').next().unwrap_or("/")
}

#[cfg(test)]
mod tests {
    use super::{
        acts_below, authority, names_another_access_token, names_destination,
        names_method_override, path_and_query,
    };

    #[test]
    fn a_query_token_other_than_the_checked_one_is_seen_in_every_spelling() {
        for query in [
            "?access_token=other",
            "?a=1&ACCESS_TOKEN=other",
            "?access.token=other",
            "?x=1;access-token=other",
            "?accessToken%5B%5D=other",
            "?acc%65ss_token=t&access_token=other",
            "?access_token=t%2B",
            "?access_token",
            // PHP ends a name at a NUL, and drops the spaces before it.
            "?access_token%00x=other",
            "?%20access_token=other",
        ] {
            assert!(names_another_access_token(query, "t"), "{query}");
        }
        for query in [
            "",
            "?access_token=t",
            "?access_token=%74",
            "?token=other&access=other",
            "?refresh_token=other",
            "?access_tokens=other",
        ] {
            assert!(!names_another_access_token(query, "t"), "{query}");
        }
    }

    #[test]
    fn methods_are_classed_by_what_they_reach() {
        for method in ["COPY", "MOVE", "copy", "Move"] {
            assert!(names_destination(method), "{method}");
            assert!(acts_below(method), "{method}");
        }
        for method in ["GET", "POST", "PROPFIND", "COPYX"] {
            assert!(!names_destination(method), "{method}");
        }
        for method in ["DELETE", "PROPFIND", "LOCK", "get"] {
            assert!(acts_below(method), "{method}");
        }
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "OPTIONS"] {
            assert!(!acts_below(method), "{method}");
        }
    }

    #[test]
    fn a_query_naming_a_method_override_is_seen_in_every_spelling_an_origin_reads() {
        for query in [
            "?_method=DELETE",
            "?a=1&_method=DELETE",
            "?_METHOD=delete",
            "?%5Fmethod=DELETE",
            "?_%6d%65thod=DELETE",
            "?.method=DELETE",
            "?+_method=DELETE",
            "?%20_method=DELETE",
            "?[method=DELETE",
            "?_method[]=DELETE",
            "?_method%5B0%5D=DELETE",
            "?_method",
            "?_method%00x=DELETE",
        ] {
            assert!(names_method_override(query), "{query}");
        }
        for query in [
            "",
            "?",
            "?method=DELETE",
            "?sort_method=asc",
            "?x=_method",
            "?_methods=1",
            "?%5",
        ] {
            assert!(!names_method_override(query), "{query}");
        }
    }

    #[test]
    fn authority_is_the_host_and_port() {
        for (url, expected) in [
            ("https://edge.example/a?b", "edge.example"),
            ("http://127.0.0.1:8787", "127.0.0.1:8787"),
            ("https://edge.example?q", "edge.example"),
            ("https://edge.example#f", "edge.example"),
        ] {
            assert_eq!(authority(url), expected, "{url}");
        }
    }

    #[test]
    fn path_and_query_keeps_the_query_and_drops_the_fragment() {
        for (url, expected) in [
            ("https://edge.example/", "/"),
            ("https://edge.example", "/"),
            (
                "http://127.0.0.1:8787/api/echo?x=1&y=two",
                "/api/echo?x=1&y=two",
            ),
            (
                "https://edge.example/a/b?next=https://x/y#frag",
                "/a/b?next=https://x/y",
            ),
            ("https://edge.example/p#/not?query", "/p"),
        ] {
            assert_eq!(path_and_query(url), expected, "{url}");
        }
    }
}
