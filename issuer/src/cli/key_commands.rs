//! `keys rotate|import|list|reseal|revoke`.

use super::{Failure, KeysCommand, Outcome, fail, load, now, push_after_revocation};
use crate::keys;
use crate::revoker::Revoker;

pub(super) fn run(command: KeysCommand) -> Outcome {
    match command {
        KeysCommand::Rotate { replace_unopenable } => keys_rotate(replace_unopenable),
        KeysCommand::Import { file } => keys_import(&file),
        KeysCommand::List => keys_list(),
        KeysCommand::Reseal => keys_reseal(),
        KeysCommand::Revoke { kid } => keys_revoke(&kid),
    }
}

fn keys_rotate(replace_unopenable: bool) -> Outcome {
    let (config, db) = load()?;
    let key = db
        .run_sync(|c| {
            if replace_unopenable {
                keys::rotate_replacing_unopenable(c, &config, now())
            } else {
                keys::rotate(c, &config, now())
            }
        })
        .map_err(fail)?;
    say!(
        "new signing key {} is active; the previous key stays published until its tokens expire",
        key.kid()
    );
    Ok(())
}

fn keys_import(file: &std::path::Path) -> Outcome {
    let (config, db) = load()?;
    let (key, imported) = db
        .run_sync(|c| keys::import_file(c, &config, file, now()))
        .map_err(fail)?;
    let keys::Imported::Before { status } = imported else {
        say!("imported {}: it is the signing key now", key.kid());
        return Ok(());
    };
    // Imported before: only an active key signs, and an operator importing one expects it to.
    // Said, not failed: a deploy that imports its file at every run must not break at the
    // first rotation after it.
    if status != keys::ACTIVE {
        warn_operator!(
            "warning: {} was imported before and is {status}: it does not sign (`keys rotate` \
             makes a new signing key)",
            key.kid()
        );
    }
    say!(
        "{} was imported before and is {status}; nothing changed",
        key.kid()
    );
    Ok(())
}

fn keys_revoke(kid: &str) -> Outcome {
    let (config, db) = load()?;
    let signing_until = db
        .run_sync(|c| keys::still_signing_until(c, &config, kid, now()))
        .map_err(fail)?;
    if let Some(until) = signing_until {
        // An emergency goes ahead: the operator learns the price.
        warn_operator!(
            "warning: {kid} was retired less than two maintenance periods ago: until {} s from \
             now, a replica that has not re-read its key ring still signs with it, and the edge \
             will refuse those tokens (their users sign in again)",
            until - now()
        );
    }
    let revoker = Revoker::for_command(db.clone(), config.clone());
    revoker
        .run_sync(now(), |r| keys::revoke(r, kid))
        .map_err(fail)?;
    say!(
        "key {kid} is revoked: out of the JWKS at each replica's next key refresh, and refused \
         at the edge as soon as its revocation list has it (seconds, through the delta feed)"
    );
    push_after_revocation(&config, &db)
}

fn keys_reseal() -> Outcome {
    let (config, db) = load()?;
    let report = db
        .run_sync(|c| keys::reseal(c, &config, now()))
        .map_err(fail)?;
    for kid in &report.resealed {
        say!("{kid}: sealed again under GATEHOUSE_KEY_ENCRYPTION_KEY");
    }
    for kid in &report.set_aside {
        say!("{kid}: retired or revoked, opens with no configured secret; never signs again");
    }
    say!(
        "{} key(s) resealed, {} already under the current secret",
        report.resealed.len(),
        report.current
    );
    if !report.unopened.is_empty() {
        return Err(Failure::Failed(format!(
            "{} key(s) open with no configured secret, left as they are: {}",
            report.unopened.len(),
            report.unopened.join("; ")
        )));
    }
    say!("no key needs GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS any more");
    Ok(())
}

fn keys_list() -> Outcome {
    let (_, db) = load()?;
    for k in db.run_sync(keys::list).map_err(fail)? {
        let retired = k.retired_at.map_or_else(|| "-".into(), |t| t.to_string());
        say!(
            "{}\t{}\t{}\tcreated {}\tretired {retired}",
            k.kid,
            k.alg,
            k.status,
            k.created_at
        );
    }
    Ok(())
}
