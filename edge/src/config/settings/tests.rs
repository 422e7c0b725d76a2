use super::{
    UrlProblem, checked_url, cors_origins, delta_poll_floor, offline_problems, public_paths,
    route_scopes, scope_rules_made_public, url_problem,
};

#[test]
fn base_urls_are_scheme_host_and_path() {
    for fine in [
        "https://origin.example",
        "https://origin.example:8443/base",
        "https://origin.example/@app",
        "http://127.0.0.1:8000",
        "http://localhost/x",
        "http://LocalHost:8000",
        "http://[::1]:9",
    ] {
        assert!(url_problem(fine, true).is_none(), "{fine}");
    }
    for unusable in [
        "origin.example",
        "ftp://origin.example",
        "https://origin.example/x#",
        "https://origin.example/x?a=1",
        "https://user:pw@origin.example",
        "https://",
        "https://?x",
        "https://origin .example",
    ] {
        assert!(
            matches!(url_problem(unusable, true), Some(UrlProblem::Unusable(_))),
            "{unusable}"
        );
    }
    // Used as given, not as a base: a query is the URL's own.
    assert!(url_problem("https://issuer.example/delta?v=2", false).is_none());
    assert!(url_problem("https://u@issuer.example/delta", false).is_some());
    for plain in [
        "http://issuer.example",
        "http://localhost.evil.example",
        "http://127.0.0.10",
    ] {
        assert!(
            matches!(url_problem(plain, true), Some(UrlProblem::PlainHttp)),
            "{plain}"
        );
    }
}

/// A URL refused for its user info is reported without it: the report reaches the health
/// details and a deploy check's output. Before, the password was repeated there.
#[test]
fn a_url_with_user_info_is_reported_without_it() {
    let mut problems = Vec::new();
    let url = checked_url(
        "ORIGIN_URL",
        "https://svc:s3cret@origin.example/app",
        &mut problems,
    );
    assert!(url.is_empty());
    assert_eq!(
        problems,
        ["ORIGIN_URL=\"https://…@origin.example/app\" needs a host, without user info or spaces"]
    );
}

#[test]
fn a_scope_rule_under_a_public_path_is_reported() {
    let rules = route_scopes("/api/admin/*=admin,/docs/edit=write,/api/*=read", &[]).unwrap();
    let mut problems = Vec::new();
    for (public, overruled) in [
        ("/", 0),
        ("/api/admin/health,/docs", 0),
        ("/api/*", 2),
        ("/API/*", 2),
        ("/docs*", 1),
        ("/*", 3),
        // `ſ` (U+017F): a case-folding origin reads `/%C5%BFecret/…` as `/secret/…`.
        ("/%C5%BFecret/*", 0),
        ("/%C4%B0/*,/%C5%BFecret/*", 0),
    ] {
        let public = public_paths(public, &mut problems);
        assert_eq!(
            scope_rules_made_public(&public, &rules).len(),
            overruled,
            "{public:?}"
        );
    }
    assert!(problems.is_empty(), "{problems:?}");
    // Strictly below a rule's root is a carve-out (a path, or a prefix), and so is any exact path
    // under `/` (the landing page public beside everything else guarded: it stopped the worker).
    // The rule's own root is not, in any spelling the rule covers: the handler it names; nor a
    // parent's format suffix, through which `DELETE` would reach the rule below.
    let rules = "/*=user,/docs/edit=write,/api/admin/*=admin,/app/x=x";
    let everything = route_scopes(rules, &[]).unwrap();
    for (public, overruled) in [
        (
            "/,/index.html,/pkg/*,/docs/editor,/api/admin/health,/api/admin/docs/*,/app/x/y,\
             /app/x.1/y,/api/admin.v2/health",
            0,
        ),
        ("/docs/edit", 1),
        ("/docs/edit/", 1),
        ("/docs/edit.json", 1),
        ("/api/admin/", 1),
        ("/API/admin", 1),
        ("/api/admin.json", 1),
        ("/api/admin.*", 1),
        ("/api/admin/*", 1),
        ("/api.*", 1),
        // What routers that decode first take for the root, or its parent.
        ("/api/admin%20", 1),
        ("/api/admin%3F*", 1),
        ("/api%20*", 1),
        // Unfinished escapes of letters a case-folding router reads as ASCII (`İ`, `K`).
        ("/api/adm%C4*", 1),
        ("/api/adm%c4*", 1),
        ("/docs/edi%E2%84*", 1),
        // A rule without `/` covers `/app/x/…`: a public `/app/x/*` is its whole subtree.
        ("/app/x/*", 1),
        ("/app/x.*", 1),
    ] {
        let public = public_paths(public, &mut problems);
        assert_eq!(
            scope_rules_made_public(&public, &everything).len(),
            overruled,
            "{public:?}"
        );
        assert_eq!(route_scopes(rules, &public).is_ok(), overruled == 0);
    }
    let rules = route_scopes("/secret/x/*=x,/ip/*=ip", &[]).unwrap();
    for public in ["/%C5%BFecret/*", "/%C4%B0p/*", "/%C4%B1P/*"] {
        let public = public_paths(public, &mut problems);
        assert_eq!(
            scope_rules_made_public(&public, &rules).len(),
            1,
            "{public:?}"
        );
    }
}

#[test]
fn a_list_age_limit_a_quiet_list_outgrows_is_reported() {
    let vars = |max_age: &'static str| {
        offline_problems(move |name| match name {
            "MAX_LIST_AGE_SECS" => Some(max_age.to_owned()),
            _ => None,
        })
    };
    let reported =
        |problems: Vec<String>| problems.iter().any(|p| p.starts_with("MAX_LIST_AGE_SECS="));
    // The defaults: 3600 + 135 + 10.
    assert!(reported(vars("3745")));
    assert!(reported(vars("1800")));
    assert!(!reported(vars("3746")));
    assert!(!reported(vars("5400")));
}

#[test]
fn a_delta_poll_interval_under_its_least_is_raised_and_reported() {
    for ms in [0, 100, 500, 5000] {
        assert_eq!(delta_poll_floor(ms), (ms, None));
    }
    let (ms, problem) = delta_poll_floor(1);
    assert_eq!(ms, 100);
    assert!(problem.unwrap().starts_with("DELTA_POLL_MS is under 100"));
    let offline = |value: &'static str| {
        offline_problems(move |name| (name == "DELTA_POLL_MS").then(|| value.to_owned()))
    };
    assert!(
        offline("5")
            .iter()
            .any(|p| p.starts_with("DELTA_POLL_MS is under"))
    );
    assert!(offline("0").iter().all(|p| !p.contains("DELTA_POLL_MS")));
}

#[test]
fn a_number_the_worker_cannot_read_is_reported() {
    let problems = offline_problems(|name| (name == "KV_HEARTBEAT_SECS").then(|| "0.5".into()));
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("KV_HEARTBEAT_SECS=\"0.5\" is not a whole number")),
        "{problems:?}"
    );
}

/// A listed page sends its token in a header unless a cookie carries it, and the browser's
/// preflight for that header passes the gate only when forwarded.
#[test]
fn cors_origins_no_preflight_can_reach_are_reported() {
    let reported = |set: &[(&'static str, &'static str)]| {
        let set = set.to_vec();
        offline_problems(move |name| {
            set.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .iter()
        .any(|p| p.starts_with("CORS_ORIGINS without TOKEN_COOKIE"))
    };
    let origins = ("CORS_ORIGINS", "https://app.example");
    assert!(reported(&[origins]));
    assert!(reported(&[origins, ("CORS_PREFLIGHT", "token")]));
    assert!(!reported(&[origins, ("CORS_PREFLIGHT", "forward")]));
    assert!(!reported(&[origins, ("TOKEN_COOKIE", "at")]));
    assert!(!reported(&[]));
    assert!(!reported(&[("CORS_ORIGINS", "*")]), "no origin is listed");
}

/// A cookie name no `Cookie` pair can match is reported: before, cookie logins failed with a
/// 401 and nothing said. Names outside RFC 6265's token that browsers send and the gate
/// matches are not.
#[test]
fn a_token_cookie_that_no_cookie_can_match_is_reported() {
    let problems = |name: &'static str| {
        offline_problems(move |var| (var == "TOKEN_COOKIE").then(|| name.to_owned()))
            .into_iter()
            .filter(|p| p.starts_with("TOKEN_COOKIE"))
            .collect::<Vec<_>>()
    };
    for good in [
        "gh_at",
        "__Host-gh_at",
        "app:token",
        "session[token]",
        "g\u{e9}",
    ] {
        assert_eq!(problems(good), Vec::<String>::new(), "{good}");
    }
    for bad in [" gh_at", "gh_at ", "gh_at\t", "gh=at", "gh_at;", "gh_at=1"] {
        assert_eq!(
            problems(bad),
            [format!(
                "TOKEN_COOKIE {bad:?} can match no cookie (an `=`, a `;`, or a space around it)"
            )],
            "{bad}"
        );
    }
}

#[test]
fn cors_origins_are_exact_origins() {
    let mut problems = Vec::new();
    let origins = cors_origins(
        " https://App.example/, http://127.0.0.1:8080,*,app.example,https://a.example/x,https://",
        &mut problems,
    );
    assert_eq!(origins, ["https://app.example", "http://127.0.0.1:8080"]);
    assert_eq!(problems.len(), 4, "{problems:?}");
}

#[test]
fn rules_are_read_in_the_canonical_form_requests_are_matched_in() {
    let rules = route_scopes(
        "/api/*=read, //api/%61dmin/*=admin ,/API/x=x,/f/%EF%AC%81/*=fi",
        &[],
    )
    .unwrap();
    assert_eq!(
        rules,
        [
            ("/api/admin/".to_owned(), "admin".to_owned()),
            ("/API/x".to_owned(), "x".to_owned()),
            // Folded as paths are, so that the path it was written for still meets it.
            ("/f/fi/".to_owned(), "fi".to_owned()),
            ("/api/".to_owned(), "read".to_owned()),
        ]
    );
    // A character a request may hold raw or escaped is escaped in the rule too.
    let rules = route_scopes("/api/%7borg%7D/admin/*=admin,/api/a|b=x,/a/%2A/b=star", &[]).unwrap();
    assert_eq!(
        rules,
        [
            ("/api/%7Borg%7D/admin/".to_owned(), "admin".to_owned()),
            ("/api/a%7Cb".to_owned(), "x".to_owned()),
            ("/a/*/b".to_owned(), "star".to_owned()),
        ]
    );
    let mut problems = Vec::new();
    let public = public_paths(
        "/,/pkg/*,/%7Euser/a%2d.js,/a/../b,/a/*/b,/files/report%2A",
        &mut problems,
    );
    assert_eq!(public, ["/", "/pkg/*", "/~user/a-.js"]);
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn a_scope_rule_that_cannot_be_honoured_fails_the_whole_set() {
    for raw in [
        "/api/admin%2F*=admin,/api/*=read",
        "/api/admin;x/*=admin,/api/*=read",
        "api/admin/*=admin,/api/*=read",
        "/api/admin/*=,/api/*=read",
        "/api/admin/*,/api/*=read",
        "/api/%zz/*=admin",
        "/api/*/admin/*=admin,/api/*=read",
        "/api/{org}/admin/*=admin,/api/*=read",
        "/api/%2A=admin,/api/*=read",
        "/api/%2A*=admin,/api/*=read",
        // Another separator than `,`: before, one rule with the scope `admin;/api/*=read`,
        // and `/api/*` open to any token.
        "/api/admin/*=admin;/api/*=read",
    ] {
        let broken = route_scopes(raw, &[]).unwrap_err();
        assert_eq!(broken.len(), 1, "{raw}: {broken:?}");
    }
    assert_eq!(route_scopes("", &[]).unwrap(), []);
    // Two scopes for one prefix, ASCII case aside: only the first applied, silently (`read`
    // opened `/api/` to tokens without `admin`). The same rule twice is harmless.
    for twice in [
        "/api/*=read,/api/*=admin",
        "/api/*=read,/API/*=admin",
        "/api=a,/Api=b",
        "/billing=billing:admin,/billing/*=billing:read",
    ] {
        let broken = route_scopes(twice, &[]).unwrap_err();
        assert!(broken[0].contains("a second scope"), "{twice}: {broken:?}");
    }
    assert_eq!(
        route_scopes("/api/*=read,/API/*=read", &[]).unwrap().len(),
        2
    );
}

#[test]
fn the_switches_checked_before_a_deploy_are_those_the_worker_reads() {
    let read: Vec<Vec<&str>> = include_str!("../mod.rs")
        .split("vars.switch(")
        .skip(1)
        .map(|call| {
            let args = call.split("))").next().unwrap_or_default();
            args.split('"').skip(1).step_by(2).collect()
        })
        .collect();
    let listed: Vec<Vec<&str>> = super::SWITCHES
        .iter()
        .map(|(name, (off, on))| vec![*name, *off, *on])
        .collect();
    assert_eq!(read, listed);
}

#[test]
fn every_var_the_worker_reads_is_listed_and_others_are_named() {
    // Every upper-case string literal of `config/mod.rs` is a var name read there.
    let source = include_str!("../mod.rs");
    let mut read: Vec<&str> = source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > 2
                && s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    read.sort_unstable();
    read.dedup();
    assert_eq!(read, super::VAR_NAMES);
    assert_eq!(
        super::unknown_var_problems(["CORS_ORIGIN", "ORIGIN_URL", "SOMETHING_ELSE"]),
        [
            "CORS_ORIGIN is not a var the worker reads (did you mean CORS_ORIGINS?)",
            "SOMETHING_ELSE is not a var the worker reads",
        ]
    );
}

/// A switch holds one of its two words. An unquoted TOML `true` (wrangler passes it on as the
/// text `true`) is neither: the worker reads it as off and reports it on the health route only
/// with the token, so the check before a deploy reports it too; and a token limit under what
/// the issuer's tokens take.
#[test]
fn a_switch_that_is_neither_word_and_a_token_limit_too_small_are_reported() {
    let offline = |name: &'static str, value: &'static str| {
        offline_problems(move |var| (var == name).then(|| value.to_owned()))
    };
    assert!(
        offline("SERVER_TIMING", "true")
            .iter()
            .any(|p| p == "SERVER_TIMING=\"true\" is neither off nor on; using off")
    );
    assert!(
        offline("CORS_PREFLIGHT", "on")
            .iter()
            .any(|p| p.starts_with("CORS_PREFLIGHT=\"on\" is neither token nor forward"))
    );
    for (name, value) in [("SERVER_TIMING", "on"), ("CORS_PREFLIGHT", "forward")] {
        assert!(
            offline(name, value).iter().all(|p| !p.contains(name)),
            "{name}={value}"
        );
    }
    assert!(
        offline("MAX_TOKEN_BYTES", "512")
            .iter()
            .any(|p| p.starts_with("MAX_TOKEN_BYTES=512 is under 1024"))
    );
    assert!(
        offline("MAX_TOKEN_BYTES", "1024")
            .iter()
            .all(|p| !p.contains("MAX_TOKEN_BYTES"))
    );
}
