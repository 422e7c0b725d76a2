//! The multi-location SIMULATION (`tests/sim/locations.mjs`): several workerd instances of the
//! built worker, each with its own KV and cache, and a KV replicator with a fixed delay between
//! them (60 s by default, the delay Cloudflare documents as usual, not as a bound). It stands in for Cloudflare's network, which no machine here
//! reaches; the script says what it does not model.

#![allow(clippy::indexing_slicing)] // a testkit: a wrong location index fails loudly

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{NodeServer, built_worker, http, json_of};

pub struct Locations {
    server: NodeServer,
    /// Each location's base URL.
    pub urls: Vec<String>,
}

impl Locations {
    /// `count` locations of the built worker with `vars`, KV writes reaching the others after
    /// `kv_delay`; each location reads its own writes at once.
    pub async fn start(count: usize, vars: &[(&str, &str)], kv_delay: Duration) -> Self {
        Self::start_reading_own_writes_late(count, vars, kv_delay, Duration::ZERO).await
    }

    /// [`Self::start`] where a location's worker reads each key's version before its own put
    /// until `own_read_lag` after the put (Cloudflare does not promise reading one's own write).
    pub async fn start_reading_own_writes_late(
        count: usize,
        vars: &[(&str, &str)],
        kv_delay: Duration,
        own_read_lag: Duration,
    ) -> Self {
        let vars: serde_json::Map<String, Value> = crate::with_health_token(vars)
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        let script = built_worker();
        let delay_ms = u64::try_from(kv_delay.as_millis()).expect("delay fits u64");
        let lag_ms = u64::try_from(own_read_lag.as_millis()).expect("lag fits u64");
        let server = NodeServer::start(
            "tests/sim/locations.mjs",
            |port| {
                let config = serde_json::json!({
                    "script": script, "port": port, "locations": count, "vars": vars,
                    "kvDelayMs": delay_ms, "ownReadLagMs": lag_ms,
                });
                vec![config.to_string()]
            },
            "/locations",
            Duration::from_mins(1),
        )
        .await;
        let (status, list) = json_of(
            http()
                .get(format!("{}/locations", server.url))
                .send()
                .await
                .expect("locations"),
        )
        .await;
        assert_eq!(status, 200, "{list}");
        let urls: Vec<String> = list
            .as_array()
            .expect("a list of locations")
            .iter()
            .map(|l| l["url"].as_str().expect("url").to_owned())
            .collect();
        assert_eq!(urls.len(), count, "{list}");
        Self { server, urls }
    }

    /// Each location's sync endpoint (a push lands at one of them, as on Cloudflare).
    pub fn sync_url(&self, location: usize) -> String {
        format!("{}/_gatehouse/sync", self.urls[location])
    }

    /// KV puts the worker made at each location so far, each counted as made, an unchanged
    /// value's too (replicated copies not counted).
    pub async fn kv_writes(&self) -> Vec<u64> {
        self.write_counts("writes").await
    }

    /// Changed list contents the replicator found at each location that it had not delivered
    /// there itself: the worker's list writes as KV's contents show them, or the replicator
    /// echoing a value back, which the put counts cannot show.
    pub async fn kv_list_changes(&self) -> Vec<u64> {
        self.write_counts("list_changes").await
    }

    /// The worker's KV writes the simulation refused, across the locations: a second write to
    /// a key within a second of the last (KV's per-key limit).
    pub async fn kv_refused_writes(&self) -> u64 {
        self.simulation_count("refused").await
    }

    /// Reads a location's worker got from before its own puts (`start_reading_own_writes_late`).
    pub async fn kv_stale_reads(&self) -> u64 {
        self.simulation_count("stale_reads").await
    }

    /// The replicator's ticks that failed (a delivery it could not make): 0 in a run whose
    /// figures mean anything.
    pub async fn replicator_errors(&self) -> u64 {
        self.simulation_count("replicator_errors").await
    }

    async fn simulation_count(&self, name: &str) -> u64 {
        let (_, json) = json_of(
            http()
                .get(format!("{}/refused-writes", self.server.url))
                .send()
                .await
                .expect("refused-writes"),
        )
        .await;
        json[name]
            .as_u64()
            .unwrap_or_else(|| panic!("the simulation's {name} count: {json}"))
    }

    /// [`Self::kv_writes`] to the key set's copy only: both counts from one reading of the
    /// simulation (two readings could take a list write between them).
    pub async fn kv_key_set_writes(&self) -> Vec<u64> {
        self.per_location("writes")
            .await
            .iter()
            .map(|l| {
                let count = |field: &str| l[field].as_u64().expect("a count");
                count("writes") - count("list_writes")
            })
            .collect()
    }

    async fn write_counts(&self, field: &str) -> Vec<u64> {
        self.per_location("writes")
            .await
            .iter()
            .map(|l| l[field].as_u64().expect("a count"))
            .collect()
    }

    /// The worker's reads of KV's `key` at each location so far (`get` and `getWithMetadata`).
    pub async fn kv_reads(&self, key: &str) -> Vec<u64> {
        self.per_location("reads")
            .await
            .iter()
            .map(|l| l[key].as_u64().unwrap_or(0))
            .collect()
    }

    /// Each location's copy of KV's `revocations-head` key (`null` where it has none yet).
    pub async fn kv_heads(&self) -> Vec<Value> {
        self.per_location("heads").await
    }

    /// The metadata of each location's KV `revocations` key: `{seq, issued_at, signer_high,
    /// signer_low}` of the list it holds (`null` where it has none).
    pub async fn kv_snapshots(&self) -> Vec<Value> {
        self.per_location("snapshots").await
    }

    /// Writes `key` in one location's KV as the worker there would (replicated like its own
    /// writes): what a late write by another isolate leaves behind.
    pub async fn put_kv(&self, location: usize, key: &str, value: String, metadata: &Value) {
        let response = http()
            .put(format!("{}/kv/{location}/{key}", self.server.url))
            .header("x-kv-metadata", metadata.to_string())
            .body(value)
            .send()
            .await
            .expect("put");
        assert!(response.status().is_success(), "put {key} at {location}");
    }

    /// The worker's next `count` puts of `key`, at any location, reach KV `late` (a slow write).
    pub async fn slow_puts(&self, key: &str, count: u32, late: Duration) {
        let response = http()
            .post(format!("{}/slow-puts/{key}", self.server.url))
            .json(&serde_json::json!({ "count": count, "ms": late.as_millis() }))
            .send()
            .await
            .expect("slow puts");
        assert!(response.status().is_success(), "slow puts of {key}");
    }

    /// The simulation's `GET /<path>`: one value per location.
    async fn per_location(&self, path: &str) -> Vec<Value> {
        let (_, json) = json_of(
            http()
                .get(format!("{}/{path}", self.server.url))
                .send()
                .await
                .expect(path),
        )
        .await;
        json.as_array().expect("a list").clone()
    }

    /// Fires one location's cron trigger (the pull path).
    pub async fn run_cron(&self, location: usize) {
        let response = http()
            .post(format!("{}/cron/{location}", self.server.url))
            .send()
            .await
            .expect("cron");
        assert!(response.status().is_success(), "cron at {location}");
    }

    /// The verdict of `/_gatehouse/check` at one location for `token`: status and code.
    pub async fn check(&self, location: usize, token: &str) -> (u16, String) {
        let response = http()
            .get(format!("{}/_gatehouse/check", self.urls[location]))
            .bearer_auth(token)
            .send()
            .await;
        match response {
            Ok(r) => {
                let (status, json) = json_of(r).await;
                (status, json["code"].as_str().unwrap_or_default().to_owned())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// Polls every location (every 20 ms) until each refuses `token` as revoked; each
    /// location's time from `since`, or `None` if it still accepted it after `timeout`.
    pub async fn time_to_refusal(
        &self,
        token: &str,
        since: Instant,
        timeout: Duration,
    ) -> Vec<Option<Duration>> {
        let waits = (0..self.urls.len()).map(|location| async move {
            loop {
                let (status, code) = self.check(location, token).await;
                if status == 401 && code == "revoked" {
                    return Some(since.elapsed());
                }
                if since.elapsed() > timeout {
                    eprintln!("location {location}: not refused in {timeout:?}; last answer {status} {code:?}");
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        futures_util::future::join_all(waits).await
    }
}
