//! The request path: one canonical form, matched against `PUBLIC_PATHS` and `ROUTE_SCOPES` and
//! sent to the origin exactly as it was matched, so the origin never routes on a path the gate
//! read differently.
//!
//! The runtime's URL parser has already resolved dot segments (`..`, `%2e%2e`) and turned `\`
//! into `/` (local workerd does; the e2e suite checks it with raw request lines). What it leaves,
//! origin routers still disagree on, so the canonical form settles it:
//! - escapes of unreserved characters, and of the sub-delimiters, `:` and `@` that a path may
//!   hold raw, are decoded (RFC 3986 §6.2.2.2: `%61` is `a`; most routers also read `%40` as
//!   `@`), the other escapes are kept with upper-case hex;
//! - any other byte is escaped (`|`, `[` and `^` arrive raw or escaped as the client sent them,
//!   and a rule's `%7B` must meet the runtime's, which escapes every `{`);
//! - repeated slashes are merged (`//api` is `/api`, as most servers read it);
//! - refused outright: an escaped `/` or `\` (one segment to the gate, two to a server that
//!   decodes first), a `;` raw or escaped (Tomcat and Spring drop `;params` before routing, so
//!   `/pkg/..;/api` is `/api` to them), an escaped control byte (a router that decodes first
//!   may trim `%0A`, or match it with a regex `$`, which Python's and .NET's let end before a
//!   final newline: `/api/admin%0A` is `/api/admin` to them), a malformed escape, a `.` or `..`
//!   segment left after decoding, and, should a runtime leave them, a raw `\`, space or control
//!   byte (the origin request's URL parser would turn `\` into `/` and drop a tab or newline,
//!   after the gate matched the path with them).
//!
//! Rules then match generously where that only asks for more (a scope rule ignores ASCII case,
//! `/api/admin/*` also covers `/api/admin` and the spellings routers take for it, and a path
//! holding a non-ASCII letter whose case mapping is ASCII needs the rule of its folded spelling
//! as well as its own) and strictly where it would let more through (a public path matches
//! with its exact case).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Besides letters and digits, what a path segment holds raw and an escape of decodes to:
/// RFC 3986's unreserved marks, the sub-delimiters but `;`, `:` and `@`.
const RAW_IN_PATH: &[u8] = b"-._~!$&'()*+,=:@";

/// Why a path was refused; the worker answers 400 `invalid_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// `path` (without query or fragment, as the runtime normalised it) in canonical form.
pub fn canonical(path: &str) -> Result<String, Refused> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        let c = match b {
            b';' | b'\\' | ..=b' ' | 0x7f => return Err(Refused),
            b'/' => {
                if !out.ends_with('/') {
                    out.push('/');
                }
                continue;
            }
            b'%' => {
                let decoded = bytes.get(i..i + 2).and_then(hex_byte).ok_or(Refused)?;
                i += 2;
                if matches!(decoded, b'/' | b'\\' | b';' | ..=0x1f | 0x7f) {
                    return Err(Refused);
                }
                decoded
            }
            b => b,
        };
        // Raw or escaped, one spelling: what a path holds raw as itself, anything else escaped.
        if c.is_ascii_alphanumeric() || RAW_IN_PATH.contains(&c) {
            out.push(char::from(c));
        } else {
            let _ = write!(out, "%{c:02X}");
        }
    }
    // The runtime percent-encodes every non-ASCII byte, so `out` holds ASCII only.
    if !path.is_ascii() || out.split('/').any(|s| s == "." || s == "..") {
        return Err(Refused);
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    Ok(out)
}

/// The byte the two hex digits of a `%XX` escape name.
pub fn hex_byte(hex: &[u8]) -> Option<u8> {
    let digit = |b: &u8| char::from(*b).to_digit(16);
    match hex {
        [high, low] => u8::try_from(digit(high)? * 16 + digit(low)?).ok(),
        _ => None,
    }
}

/// The path a WebDAV `Destination` header names (RFC 4918 §10.3: an absolute URI or an
/// absolute path), in canonical form, and its `?query` as sent. Refused, besides what
/// `canonical` refuses: a URI of another host than `authority` (the request's) or of another
/// scheme than HTTP, a network-path reference (`//host/…`, which a router reads as a host) and a
/// fragment.
pub fn destination(value: &str, authority: &str) -> Result<(String, String), Refused> {
    let path_and_query = if value.starts_with('/') {
        value
    } else {
        let (scheme, rest) = value.split_once("://").ok_or(Refused)?;
        let host = crate::incoming::authority(value);
        let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
        if !http || !host.eq_ignore_ascii_case(authority) {
            return Err(Refused);
        }
        rest.get(host.len()..).unwrap_or_default()
    };
    if path_and_query.starts_with("//") || path_and_query.contains('#') {
        return Err(Refused);
    }
    canonical_with_query(path_and_query)
}

/// `/path?query` as the canonical path and the `?query` as sent (empty without one: no
/// allocation for the common request).
pub fn canonical_with_query(path_and_query: &str) -> Result<(String, String), Refused> {
    let path_len = path_and_query.find('?').unwrap_or(path_and_query.len());
    let (path, query) = path_and_query.split_at(path_len);
    Ok((canonical(path)?, query.to_owned()))
}

/// A `PUBLIC_PATHS` entry: an exact path, or a prefix ending in `*`; case-sensitive.
pub fn is_public(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => path == pattern,
    }
}

/// The letters outside ASCII whose case mapping is ASCII (Unicode's case tables: `İ` lowers to
/// `i`, `ı` uppers to `I`, `ſ` to `S`, the Kelvin sign lowers to `k`; `ß` uppers to `SS` and `ẞ`
/// folds to `ss`; the Latin ligatures upper to two or three letters), as the canonical path
/// keeps them escaped. A router that decodes and then folds case (Java's `equalsIgnoreCase`,
/// Python's `casefold`) reads `/api/adm%C4%B0n` as `/api/admin`.
const ESCAPED_ASCII_CASE_FOLDS: &[(&str, &str)] = &[
    ("%C3%9F", "ss"),
    ("%E1%BA%9E", "ss"),
    ("%C4%B0", "i"),
    ("%C4%B1", "i"),
    ("%C5%BF", "s"),
    ("%E2%84%AA", "k"),
    ("%EF%AC%80", "ff"),
    ("%EF%AC%81", "fi"),
    ("%EF%AC%82", "fl"),
    ("%EF%AC%83", "ffi"),
    ("%EF%AC%84", "ffl"),
    ("%EF%AC%85", "st"),
    ("%EF%AC%86", "st"),
];

/// A canonical path as scope rules read it: those letters folded to ASCII, so that a spelling a
/// case-folding router sends to a scoped route needs that route's scope. The rules' prefixes
/// are folded the same way; only the scope lookup reads the folded form, and the origin gets
/// the path as it was.
pub fn folded_for_scopes(path: &str) -> Cow<'_, str> {
    let mut folded = Cow::Borrowed(path);
    if path.contains('%') {
        for (escaped, ascii) in ESCAPED_ASCII_CASE_FOLDS {
            if folded.contains(escaped) {
                folded = Cow::Owned(folded.replace(escaped, ascii));
            }
        }
    }
    folded
}

/// `prefix` without a trailing, unfinished escape of a letter `folded_for_scopes` folds: a
/// public `/api/adm%C4*` lets through `/api/adm%C4%B0n/…`, which a case-folding router reads as
/// `/api/admin/…`, so it reaches as far as `/api/adm*` does.
pub fn without_unfinished_fold(prefix: &str) -> &str {
    for (escaped, _) in ESCAPED_ASCII_CASE_FOLDS {
        for n in [3, 6] {
            let Some(at) = prefix.len().checked_sub(n) else {
                continue;
            };
            let unfinished = escaped.get(..n).filter(|_| n < escaped.len());
            if let (Some(tail), Some(unfinished)) = (prefix.get(at..), unfinished)
                && tail.eq_ignore_ascii_case(unfinished)
            {
                return prefix.get(..at).unwrap_or(prefix);
            }
        }
    }
    prefix
}

/// Whether `rest`, what follows a name in a canonical path, leaves routers reading that name
/// alone: nothing, a format suffix (`.json`, which Rails' `(.:format)` routes and Spring's
/// suffix matching send to the name's handler), or an escaped space, `?` or `#`, which routers
/// that decode first trim (Spring's `trimTokens`) or cut off as a query or fragment.
pub fn leaves_the_name(rest: &[u8]) -> bool {
    let escape = rest.get(..3).unwrap_or_default();
    rest.is_empty()
        || rest.starts_with(b".")
        || [b"%20", b"%3F", b"%23"]
            .iter()
            .any(|e| escape.eq_ignore_ascii_case(*e))
}

/// A `ROUTE_SCOPES` prefix (its `*` already dropped), matched against `folded_for_scopes`'s
/// path: ASCII case ignored, and a prefix ending in `/` also covers the path without it
/// (`/api/admin/` covers `/api/admin`), and what routers take for that path
/// (`leaves_the_name`: `/api/admin.json`, `/api/admin%20`).
pub fn within_scope_prefix(prefix: &str, path: &str) -> bool {
    let (prefix, path) = (prefix.as_bytes(), path.as_bytes());
    let starts_with = |head: &[u8]| {
        path.get(..head.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(head))
    };
    starts_with(prefix)
        || prefix.strip_suffix(b"/").is_some_and(|bare| {
            !bare.is_empty()
                && starts_with(bare)
                && leaves_the_name(path.get(bare.len()..).unwrap_or_default())
        })
}

/// Whether a `ROUTE_SCOPES` prefix lies strictly below `path` (ASCII case ignored), so that a
/// method acting on everything under `path` reaches that rule's paths: `/api/admin/` lies below
/// `/api` and `/api/`, and below `/`, not below `/ap` or `/api/admin`. Below `/api.json` and
/// `/api%20` too, which routers send where `/api` goes (`leaves_the_name`, as
/// `within_scope_prefix` reads it).
pub fn lies_below(prefix: &str, path: &str) -> bool {
    let parent = path.as_bytes();
    let parent = parent.strip_suffix(b"/").unwrap_or(parent);
    // The last segment cut where routers stop reading its name.
    let segment = parent
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |slash| slash + 1);
    let bare = (segment..parent.len())
        .find(|&at| leaves_the_name(parent.get(at..).unwrap_or_default()))
        .and_then(|at| parent.get(..at))
        .unwrap_or(parent);
    // A last segment that is all suffix (`/api/%20`, `/api/.json`) leaves its parent.
    let bare = bare.strip_suffix(b"/").unwrap_or(bare);
    contains_below(prefix.as_bytes(), parent) || contains_below(prefix.as_bytes(), bare)
}

/// Whether `prefix` starts with the segments of `parent` and goes on below it.
fn contains_below(prefix: &[u8], parent: &[u8]) -> bool {
    prefix.len() > parent.len() + 1
        && prefix.get(parent.len()) == Some(&b'/')
        && prefix
            .get(..parent.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(parent))
}

#[cfg(test)]
mod tests {
    use super::{
        Refused, canonical, destination, folded_for_scopes, is_public, lies_below,
        within_scope_prefix,
    };

    #[test]
    fn canonical_paths_decode_unreserved_escapes_and_merge_slashes() {
        for (raw, expected) in [
            ("/", "/"),
            ("", "/"),
            ("/api/echo", "/api/echo"),
            ("/api/%61dmin/users", "/api/admin/users"),
            ("//api///admin/", "/api/admin/"),
            ("/api/caf%c3%a9", "/api/caf%C3%A9"),
            ("/api/a%20b", "/api/a%20b"),
            ("/api/%7Euser/%2D%2e%5F", "/api/~user/-._"),
            ("/api/a%25b", "/api/a%25b"),
            ("/api/a|b/%7c", "/api/a%7Cb/%7C"),
            (
                "/api/{org}/[x]^\"<>`",
                "/api/%7Borg%7D/%5Bx%5D%5E%22%3C%3E%60",
            ),
            (
                "/api/users/%40admin/%3A%21%24%26%27%28%29%2A%2B%2C%3D",
                "/api/users/@admin/:!$&'()*+,=",
            ),
        ] {
            assert_eq!(canonical(raw), Ok(expected.to_owned()), "{raw}");
        }
    }

    #[test]
    fn paths_a_router_could_read_differently_are_refused() {
        for raw in [
            "/api/admin%2Fusers",
            "/api/admin%2fusers",
            "/api%5Cadmin",
            "/pkg/..;/api/admin",
            "/api;x=1/admin",
            "/api%3Bx/admin",
            "/api/%00",
            "/api/admin%0A",
            "/api/admin%0d",
            "/api/admin%09",
            "/api/%1F",
            "/api/%7f",
            "/api/%",
            "/api/%4",
            "/api/%zz",
            "/api/%+A",
            "/api/%-1",
            "/api/%2e%2e/admin",
            "/api/.%2e/admin",
            "/api/%2E/x",
            "/api/caf\u{e9}",
            "/api\\admin",
            "/pkg/..\\api",
            "/api/a b",
            "/api/a\tb",
            "/api/\n",
            "/api/\u{7f}",
        ] {
            assert_eq!(canonical(raw), Err(Refused), "{raw}");
        }
    }

    #[test]
    fn a_destination_is_a_canonical_path_on_the_request_host() {
        let host = "edge.example:8443";
        for (value, path, query) in [
            ("/api/admin/x", "/api/admin/x", ""),
            (
                "https://edge.example:8443/api/%61dmin//x",
                "/api/admin/x",
                "",
            ),
            ("http://EDGE.example:8443/files/a?v=2", "/files/a", "?v=2"),
            ("HTTPS://edge.example:8443", "/", ""),
            ("/files/a?next=http://x/y", "/files/a", "?next=http://x/y"),
        ] {
            assert_eq!(
                destination(value, host),
                Ok((path.to_owned(), query.to_owned())),
                "{value}"
            );
        }
        // The host as written: a default port spelled out is another host here.
        assert_eq!(
            destination("https://edge.example:443/x", "edge.example"),
            Err(Refused)
        );
        for value in [
            "https://other.example/api/x",
            "https://edge.example/api/x",
            "https://user@edge.example:8443/api/x",
            "ftp://edge.example:8443/api/x",
            "//edge.example:8443/api/x",
            "api/x",
            "",
            "/api/x#frag",
            "/api/admin%2Fx",
            "/files/../api/admin",
            "https://edge.example:8443/files/%2e%2e/api/admin",
            "/api;x/admin",
        ] {
            assert_eq!(destination(value, host), Err(Refused), "{value}");
        }
    }

    #[test]
    fn scope_prefixes_ignore_case_and_cover_their_bare_path_and_its_format_suffixes() {
        assert!(within_scope_prefix("/api/admin/", "/api/admin/users"));
        assert!(within_scope_prefix("/api/admin/", "/API/Admin/users"));
        assert!(within_scope_prefix("/api/admin/", "/api/admin"));
        assert!(within_scope_prefix("/api/admin/", "/api/ADMIN"));
        assert!(within_scope_prefix("/api/admin/", "/api/admin.json"));
        assert!(within_scope_prefix("/api/admin/", "/api/Admin."));
        for routed_as_admin in ["/api/admin%20", "/api/admin%3F", "/api/admin%23x"] {
            assert!(
                within_scope_prefix("/api/admin/", routed_as_admin),
                "{routed_as_admin}"
            );
        }
        assert!(!within_scope_prefix("/api/admin/", "/api/admin%2520"));
        assert!(!within_scope_prefix("/api/admin/", "/api/administrator"));
        assert!(!within_scope_prefix("/api/admin/", "/api/admins.json"));
        assert!(!within_scope_prefix("/api/admin/", "/api"));
        assert!(within_scope_prefix("/", "/anything"));
        assert!(!within_scope_prefix("/", ""));
    }

    #[test]
    fn a_rule_lies_below_the_paths_that_contain_it() {
        for path in ["/", "/api", "/api/", "/API"] {
            assert!(lies_below("/api/admin/", path), "{path}");
        }
        for path in [
            "/api.json",
            "/API.",
            "/api.json/",
            "/api%20",
            "/api%3F/",
            "/api.v1.json",
            "/api/%20",
            "/api/.json",
        ] {
            assert!(lies_below("/api/admin/", path), "{path}");
        }
        for path in [
            "/ap",
            "/api/admin",
            "/api/admin/",
            "/api/admins",
            "/other",
            "/ap.i",
            "/api.d/x",
        ] {
            assert!(!lies_below("/api/admin/", path), "{path}");
        }
        assert!(lies_below("/api/admin", "/api"));
        assert!(!lies_below("/", "/"));
    }

    #[test]
    fn letters_whose_case_mapping_is_ascii_fold_for_scope_rules() {
        for (raw, folded) in [
            ("/api/adm%C4%B0n/users", "/api/admin/users"),
            ("/api/adm%C4%B1n", "/api/admin"),
            ("/api/%C5%BFecret", "/api/secret"),
            ("/api/%E2%84%AAeys", "/api/keys"),
            ("/api/%EF%AC%81les/%EF%AC%86", "/api/files/st"),
            ("/api/pa%C3%9Fwords/%E1%BA%9E", "/api/passwords/ss"),
            ("/api/caf%C3%A9", "/api/caf%C3%A9"),
            ("/api/admin", "/api/admin"),
        ] {
            let canonical = canonical(raw).unwrap_or_default();
            assert_eq!(folded_for_scopes(&canonical), folded, "{raw}");
        }
        assert!(within_scope_prefix(
            "/api/admin/",
            &folded_for_scopes("/api/ADM%C4%B0N/x")
        ));
    }

    #[test]
    fn public_paths_match_with_their_exact_case() {
        assert!(is_public("/pkg/*", "/pkg/app.js"));
        assert!(!is_public("/pkg/*", "/PKG/app.js"));
        assert!(!is_public("/pkg/*", "/pkg"));
        assert!(is_public("/favicon.ico", "/favicon.ico"));
        assert!(!is_public("/favicon.ico", "/favicon.ico/x"));
        assert!(!is_public("/favicon.ico", "/Favicon.ico"));
    }
}
