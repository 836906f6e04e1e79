//! `[fleet]` (issue 21): a FleetLock slot before disruptive steps, on the private dockerd.
//!
//! airlock, the FleetLock server Fedora CoreOS ships, needs etcd and cannot be installed on
//! these machines (no registry for its image, no network to fetch it). [`FleetLock`] is a
//! stand-in that follows the protocol as Zincati's docs give it (`docs/contributing/fleetlock.md`
//! and airlock's README), not berth's expectations: `POST /v1/pre-reboot` and
//! `POST /v1/steady-state`, both refused without the `fleet-lock-protocol: true` header, a body
//! `{"client_params": {"id": ..., "group": ...}}`, a slot count per group, recursive per id (an
//! id that holds a slot is given it again; steady-state from an id that holds none is fine), 200
//! for yes and an error body `{"kind": ..., "value": ...}` otherwise. It records when each id
//! took and gave back a slot.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::TcpListener,
    path::PathBuf,
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use crate::{
    harness::{Dockerd, Root, berth, line_starting, profile_file, within},
    require_dockerd,
};

const APP_IMAGE: &str = "berth-test/app:1";
const APP_SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";

/// What the stand-in saw: who holds a slot in each group, and every take and release in order.
#[derive(Debug, Default)]
struct Slots {
    holders: BTreeMap<String, BTreeSet<String>>,
    /// (group, id, "take" | "release" | "refused").
    events: Vec<(String, String, &'static str)>,
    /// When each id took and gave back its slot: (id, taken, released), in Unix seconds; an
    /// open interval has `f64::INFINITY` as its end.
    held: Vec<(String, f64, f64)>,
    /// The most ids that held a slot of one group at any moment.
    most_at_once: usize,
}

struct FleetLock {
    server: Arc<tiny_http::Server>,
    slots: Arc<Mutex<Slots>>,
    thread: Option<JoinHandle<()>>,
}

impl FleetLock {
    /// A server with `slots` slots in every group.
    fn start(slots: usize) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
        let state = Arc::new(Mutex::new(Slots::default()));
        let thread = {
            let server = Arc::clone(&server);
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    handle(&state, slots, request);
                }
            })
        };
        Self {
            server,
            slots: state,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.server_addr().to_ip().unwrap())
    }

    fn holders(&self, group: &str) -> BTreeSet<String> {
        self.slots
            .lock()
            .unwrap()
            .holders
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    fn held(&self) -> Vec<(String, f64, f64)> {
        self.slots.lock().unwrap().held.clone()
    }

    fn events(&self) -> Vec<(String, String, &'static str)> {
        self.slots.lock().unwrap().events.clone()
    }

    fn most_at_once(&self) -> usize {
        self.slots.lock().unwrap().most_at_once
    }

    /// As if `id` took a slot of `group` earlier.
    fn seed(&self, group: &str, id: &str) {
        let mut slots = self.slots.lock().unwrap();
        slots
            .holders
            .entry(group.to_owned())
            .or_default()
            .insert(id.to_owned());
        slots.most_at_once = slots.most_at_once.max(1);
    }

    /// As if `id`, which took a slot of `group` by [`FleetLock::seed`], gave it back.
    fn free(&self, group: &str, id: &str) {
        let mut slots = self.slots.lock().unwrap();
        slots
            .holders
            .entry(group.to_owned())
            .or_default()
            .remove(id);
    }

    /// How often the server refused `id` a slot.
    fn refusals(&self, id: &str) -> usize {
        self.events()
            .iter()
            .filter(|(_, holder, event)| holder == id && *event == "refused")
            .count()
    }
}

impl Drop for FleetLock {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(state: &Mutex<Slots>, slots: usize, mut request: tiny_http::Request) {
    let answer = |request: tiny_http::Request, status: u16, kind: &str, value: &str| {
        let body = serde_json::json!({"kind": kind, "value": value}).to_string();
        let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(status));
    };
    let protocol = request
        .headers()
        .iter()
        .any(|header| header.field.equiv("fleet-lock-protocol") && header.value.as_str() == "true");
    let endpoint = request.url().to_owned();
    if *request.method() != tiny_http::Method::Post
        || !matches!(endpoint.as_str(), "/v1/pre-reboot" | "/v1/steady-state")
    {
        return answer(request, 404, "not_found", "no such endpoint");
    }
    if !protocol {
        return answer(request, 400, "missing_header", "fleet-lock-protocol");
    }
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let params = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|body| {
            let params = &body["client_params"];
            Some((
                params["group"].as_str()?.to_owned(),
                params["id"].as_str()?.to_owned(),
            ))
        });
    let Some((group, id)) = params else {
        return answer(request, 400, "bad_request", "client_params.id and .group");
    };
    let mut state = state.lock().unwrap();
    let holders = state.holders.entry(group.clone()).or_default();
    if endpoint == "/v1/pre-reboot" {
        if holders.contains(&id) {
            // Recursive per id: a slot this id holds is given again.
            state.events.push((group, id, "take"));
        } else if holders.len() < slots {
            holders.insert(id.clone());
            let held = holders.len();
            state.most_at_once = state.most_at_once.max(held);
            state.held.push((id.clone(), now(), f64::INFINITY));
            state.events.push((group, id, "take"));
        } else {
            state.events.push((group, id, "refused"));
            drop(state);
            return answer(request, 409, "failed_lock", "semaphore currently full");
        }
    } else {
        if holders.remove(&id)
            && let Some(open) = state
                .held
                .iter_mut()
                .rev()
                .find(|(holder, _, end)| *holder == id && end.is_infinite())
        {
            open.2 = now();
        }
        state.events.push((group, id, "release"));
    }
    drop(state);
    let _ = request.respond(tiny_http::Response::from_string("").with_status_code(200));
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A loopback URL nobody listens on: the lock server is down.
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn write_fleet(root: &Root, lock: &str, id: &str) {
    root.write(
        "/etc/berth/berth.toml",
        &format!("[fleet]\nlock = \"{lock}\"\ngroup = \"runners-test\"\nid = \"{id}\"\n"),
    );
}

/// The dockerd layer and a site layer: a log level Docker restarts for (not reloads), and
/// one more container when `with_container`.
fn profiles(root: &Root, dockerd: &Dockerd, log_level: &str, with_container: bool) -> Vec<PathBuf> {
    let mut site = format!("[docker.daemon]\nlog-level = \"{log_level}\"\n");
    if with_container {
        site.push_str(&format!(
            "[containers.berth-test-web]\nimage = \"{APP_IMAGE}\"\n"
        ));
    }
    vec![
        dockerd.layer_file(),
        profile_file(&root.join("/work"), "site", &site),
    ]
}

fn p_args(profiles: &[PathBuf]) -> Vec<std::ffi::OsString> {
    profiles
        .iter()
        .flat_map(|path| ["-p".into(), path.clone().into_os_string()])
        .collect()
}

const METRICS: [&str; 2] = ["--metrics-file", "/var/lib/node-exporter/berth.prom"];

#[test]
fn lock_server_down_a_new_container_converges_and_a_restart_waits() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &[]);
    write_fleet(&root, &closed_url(), "host-a");
    let profiles = profiles(&root, &dockerd, "warn", true);
    let pid = dockerd.pid();

    let plan = berth(&root)
        .docker(&dockerd)
        .args(["plan"])
        .args(p_args(&profiles))
        .run();
    plan.code(2);
    for (resource, action) in [
        ("daemon-config ", "update    /etc/docker/daemon.json"),
        ("daemon/docker ", "restart   log-level changed"),
    ] {
        assert!(
            line_starting(&plan.stdout, resource).ends_with(&format!(
                "{action} (waits for a fleet slot in runners-test)"
            )),
            "{}",
            plan.stdout
        );
    }
    assert!(
        !line_starting(&plan.stdout, "container/berth-test-web ").contains("fleet"),
        "creating a container disrupts nothing: {}",
        plan.stdout
    );

    let apply = berth(&root)
        .docker(&dockerd)
        .args(["apply", "--yes"])
        .args(METRICS)
        .args(p_args(&profiles))
        .run();
    apply.code(75);
    // daemon.json waits with the restart it makes: written alone, the next run could not tell
    // that the running daemon has not loaded it.
    assert!(
        line_starting(&apply.stdout, "daemon-config ").ends_with("(waits for a fleet slot)"),
        "{}",
        apply.stdout
    );
    assert!(
        apply
            .stderr
            .contains("waiting for a fleet slot in `runners-test`: daemon-config;"),
        "{}",
        apply.stderr
    );
    assert!(
        apply
            .stdout
            .contains("1 added, 0 changed, 0 destroyed, 1 wait for a fleet slot."),
        "{}",
        apply.stdout
    );
    assert_eq!(root.read("/etc/docker/daemon.json").unwrap(), "{}\n");
    assert_eq!(
        dockerd.pid(),
        pid,
        "Docker was not restarted without a slot"
    );
    assert_eq!(
        dockerd
            .docker(["inspect", "-f", "{{.State.Running}}", "berth-test-web"])
            .trim(),
        "true",
        "the container that disrupts nothing converged"
    );
    let metrics = root.read("/var/lib/node-exporter/berth.prom").unwrap();
    assert!(metrics.contains("\nberth_fleet_waiting 1\n"), "{metrics}");
    assert!(metrics.contains("\nberth_fleet_slot_held 0\n"), "{metrics}");
    assert!(!root.exists("/var/lib/berth/fleet-slot.json"));
    let status = berth(&root).args(["status"]).run();
    assert!(
        status.stdout.contains(
            "fleet:     group runners-test, holds no slot; waiting for a slot: daemon-config\n"
        ),
        "{}",
        status.stdout
    );

    // The server is back: the restart that waited is made, and the slot given back.
    let lock = FleetLock::start(1);
    write_fleet(&root, &lock.url(), "host-a");
    let again = berth(&root)
        .docker(&dockerd)
        .args(["apply", "--yes"])
        .args(METRICS)
        .args(p_args(&profiles))
        .run();
    again.code(0);
    assert_ne!(dockerd.pid(), pid, "the restart that waited is made");
    let events = lock.events();
    let ours: Vec<&str> = events.iter().map(|(_, _, event)| *event).collect();
    assert_eq!(ours, ["take", "release"], "{events:?}");
    assert!(
        events
            .iter()
            .all(|(group, id, _)| group == "runners-test" && id == "host-a")
    );
    assert!(lock.holders("runners-test").is_empty());
    assert!(!root.exists("/var/lib/berth/fleet-slot.json"));
    let metrics = root.read("/var/lib/node-exporter/berth.prom").unwrap();
    assert!(metrics.contains("\nberth_fleet_waiting 0\n"), "{metrics}");
    assert!(metrics.contains("\nberth_fleet_slot_held 0\n"), "{metrics}");
    berth(&root)
        .docker(&dockerd)
        .args(p_args(&profiles))
        .converged();
}

#[test]
fn a_slot_an_ended_run_held_is_released_by_the_next_run() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let lock = FleetLock::start(1);
    write_fleet(&root, &lock.url(), "host-b");
    let profiles = profiles(&root, &dockerd, "warn", false);
    // A run that took the slot and restarted Docker, then was killed before it released: the
    // server and berth's state both say host-b holds it, and nobody else gets it.
    lock.seed("runners-test", "host-b");
    root.write(
        "/var/lib/berth/fleet-slot.json",
        &format!(
            "{{\"lock\": \"{}\", \"group\": \"runners-test\", \"id\": \"host-b\", \"since\": \"2026-12-07T00:00:00Z\"}}\n",
            lock.url()
        ),
    );
    let pid = dockerd.pid();

    // The slot is held, so plan says nothing waits.
    let plan = berth(&root)
        .docker(&dockerd)
        .args(["plan"])
        .args(p_args(&profiles))
        .run();
    plan.code(2);
    assert!(
        line_starting(&plan.stdout, "daemon/docker ").ends_with("restart   log-level changed"),
        "{}",
        plan.stdout
    );

    berth(&root)
        .docker(&dockerd)
        .args(["apply", "--yes"])
        .args(p_args(&profiles))
        .run()
        .code(0);
    assert_ne!(dockerd.pid(), pid, "the run finished the restart");
    assert!(
        lock.holders("runners-test").is_empty(),
        "{:?}",
        lock.events()
    );
    assert!(!root.exists("/var/lib/berth/fleet-slot.json"));

    // A run with nothing disruptive left, after a run that ended holding the slot: released too.
    lock.seed("runners-test", "host-b");
    root.write(
        "/var/lib/berth/fleet-slot.json",
        "{\"lock\": \"x\", \"group\": \"runners-test\", \"id\": \"host-b\", \"since\": \"2026-12-07T00:00:00Z\"}\n",
    );
    berth(&root)
        .docker(&dockerd)
        .args(["apply", "--yes"])
        .args(p_args(&profiles))
        .run()
        .code(0);
    assert!(
        lock.holders("runners-test").is_empty(),
        "{:?}",
        lock.events()
    );
    assert!(!root.exists("/var/lib/berth/fleet-slot.json"));
    assert_eq!(lock.most_at_once(), 1);
}

/// The dockerd layer, with the restart wrapped so that it records when it began and ended.
fn timed_restart_layer(dockerd: &Dockerd, log: &std::path::Path) -> PathBuf {
    let t = dockerd.dir().display();
    let log = log.display();
    let script = format!(
        "echo start $(date +%s.%N) >> {log}; sh {t}/restart.sh; rc=$?; echo end $(date +%s.%N) >> {log}; exit $rc"
    );
    profile_file(
        dockerd.dir(),
        "timed-daemon",
        &format!(
            "[docker]\nrestart = [\"sh\", \"-c\", \"{script}\"]\nreload = [\"sh\", \"{t}/reload.sh\"]\nready_timeout = 60\n"
        ),
    )
}

/// (start, end) of each restart the wrapper recorded.
fn restarts(log: &std::path::Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let times: Vec<(&str, f64)> = text
        .lines()
        .filter_map(|line| {
            let (word, time) = line.split_once(' ')?;
            Some((word, time.trim().parse().ok()?))
        })
        .collect();
    times
        .chunks(2)
        .map(|pair| {
            assert_eq!((pair[0].0, pair[1].0), ("start", "end"), "{text}");
            (pair[0].1, pair[1].1)
        })
        .collect()
}

/// Issue 21's fleet: three hosts, each with its own private dockerd and a running container,
/// share one slot; one profile change restarts Docker on all three; their applies run at once,
/// round after round, as timers would. Every restart happens while its host holds the slot, so
/// no two hosts are ever disrupted at once, and all three converge.
#[test]
fn three_hosts_sharing_one_slot_restart_one_at_a_time_and_all_converge() {
    let lock = FleetLock::start(1);
    let mut hosts = Vec::new();
    for name in ["host-1", "host-2", "host-3"] {
        let root = Root::new();
        let dockerd = require_dockerd!(&root);
        dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &[]);
        let log = root.scratch("restarts").join("log");
        let layer = timed_restart_layer(&dockerd, &log);
        hosts.push((name, root, dockerd, log, layer));
    }
    let site = |root: &Root, level: &str| {
        profile_file(
            &root.join("/work"),
            "site",
            &format!(
                "[docker.daemon]\nlog-level = \"{level}\"\n[containers.berth-test-runner]\nimage = \"{APP_IMAGE}\"\nrestart = \"always\"\n"
            ),
        )
    };
    // Before the change, without `[fleet]`: each host converged, its container running.
    for (name, root, dockerd, log, layer) in &hosts {
        berth(root)
            .docker(dockerd)
            .args(["apply", "--yes"])
            .args(p_args(&[layer.clone(), site(root, "info")]))
            .run()
            .code(0);
        std::fs::remove_file(log).unwrap();
        write_fleet(root, &lock.url(), name);
    }
    assert!(lock.events().is_empty(), "{:?}", lock.events());

    // The merged change: every host restarts Docker for it.
    let mut converged = BTreeSet::new();
    for round in 1..=5 {
        let running: Vec<_> = hosts
            .iter()
            .filter(|(name, ..)| !converged.contains(*name))
            .map(|(name, root, dockerd, _, layer)| {
                let run = berth(root)
                    .docker(dockerd)
                    .args(["apply", "--yes"])
                    .args(p_args(&[layer.clone(), site(root, "warn")]))
                    .spawn();
                (*name, run)
            })
            .collect();
        for (name, mut run) in running {
            let code = run.child.wait().unwrap().code();
            match code {
                Some(0) => {
                    converged.insert(name);
                }
                Some(75) => {}
                other => panic!("round {round}: {name} exited {other:?}\n{}", run.output()),
            }
        }
        if converged.len() == hosts.len() {
            break;
        }
    }
    assert_eq!(converged.len(), 3, "all converge: {:?}", lock.events());
    assert_eq!(lock.most_at_once(), 1);
    assert!(
        lock.holders("runners-test").is_empty(),
        "every slot given back"
    );
    let held = lock.held();
    for (name, root, dockerd, log, layer) in &hosts {
        let restarts = restarts(log);
        assert_eq!(
            restarts.len(),
            1,
            "{name} restarted Docker once: {restarts:?}"
        );
        for (start, end) in restarts {
            assert!(
                held.iter()
                    .any(|(id, taken, released)| id == name && *taken <= start && end <= *released),
                "{name} restarted Docker ({start}..{end}) outside its slot: {held:?}"
            );
        }
        assert_eq!(
            dockerd
                .docker(["inspect", "-f", "{{.State.Running}}", "berth-test-runner"])
                .trim(),
            "true"
        );
        berth(root)
            .docker(dockerd)
            .args(p_args(&[layer.clone(), site(root, "warn")]))
            .converged();
    }
    // The slots never overlapped: each was given back before the next was taken.
    let mut intervals: Vec<(f64, f64)> = held
        .iter()
        .map(|(_, taken, released)| (*taken, *released))
        .collect();
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        intervals.windows(2).all(|pair| pair[0].1 <= pair[1].0),
        "{held:?}"
    );
}

#[test]
fn a_fleet_lock_that_is_not_a_url_is_placed_at_its_key() {
    let root = Root::new();
    root.write(
        "/etc/berth/berth.toml",
        "profiles = [\"dind\"]\n\n[fleet]\nlock = \"fleetlock.example.com\"\n",
    );
    let plan = berth(&root).args(["plan"]).run();
    plan.code(1);
    assert!(
        plan.stderr.contains("berth.toml:4:")
            && plan.stderr.contains("`fleet.lock`")
            && plan
                .stderr
                .contains("must be the FleetLock server's http:// or https:// URL"),
        "{}",
        plan.stderr
    );
}

#[test]
fn destroy_goes_only_with_a_slot_and_gives_it_back() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    dockerd.import_stand_in(APP_IMAGE, APP_SCRIPT, &[]);
    let profiles = profiles(&root, &dockerd, "info", true);
    berth(&root)
        .docker(&dockerd)
        .args(["apply", "--yes"])
        .args(p_args(&profiles))
        .run()
        .code(0);

    write_fleet(&root, &closed_url(), "host-d");
    // `plan --destroy` marks what waits, as plan does: all of it, since destroy goes as a
    // whole once it holds a slot.
    let plan = berth(&root)
        .docker(&dockerd)
        .args(["plan", "--destroy"])
        .args(p_args(&profiles))
        .run();
    plan.code(2);
    assert!(
        line_starting(&plan.stdout, "container/berth-test-web ")
            .ends_with("(waits for a fleet slot in runners-test)"),
        "{}",
        plan.stdout
    );
    let waits = berth(&root)
        .docker(&dockerd)
        .args(["destroy", "--yes"])
        .args(p_args(&profiles))
        .run();
    waits.code(75);
    assert!(
        waits
            .stderr
            .contains("destroy waits for a fleet slot in `runners-test`: nothing was changed"),
        "{}",
        waits.stderr
    );
    assert_eq!(
        dockerd
            .docker(["inspect", "-f", "{{.State.Running}}", "berth-test-web"])
            .trim(),
        "true"
    );

    let lock = FleetLock::start(1);
    write_fleet(&root, &lock.url(), "host-d");
    berth(&root)
        .docker(&dockerd)
        .args(["destroy", "--yes"])
        .args(p_args(&profiles))
        .run()
        .code(0);
    assert!(
        !dockerd
            .docker_unchecked(["inspect", "berth-test-web"])
            .status
            .success(),
        "destroyed with the slot"
    );
    let events: Vec<&str> = lock.events().iter().map(|(_, _, event)| *event).collect();
    assert_eq!(events, ["take", "release"]);
    assert!(!root.exists("/var/lib/berth/fleet-slot.json"));
}

/// Issue 21: `berth watch` tries a converge whose restart waits for a fleet slot again on its
/// own schedule, since no Docker event or file change says a slot was freed: another host holds
/// the only slot, watch is refused again and again; the stand-in frees the slot, and watch
/// restarts Docker and gives the slot back with nothing else happening on the host.
#[test]
fn watch_retries_a_waiting_converge_on_its_own_until_a_slot_is_free() {
    let root = Root::new();
    let dockerd = require_dockerd!(&root);
    let lock = FleetLock::start(1);
    berth(&root)
        .docker(&dockerd)
        .args(["apply", "--yes"])
        .args(p_args(&profiles(&root, &dockerd, "info", false)))
        .run()
        .code(0);
    lock.seed("runners-test", "host-other");
    write_fleet(&root, &lock.url(), "host-w");
    // The merged change, before watch starts: the restart it needs waits for the slot.
    let profiles = profiles(&root, &dockerd, "warn", false);
    let pid = dockerd.pid();
    let mut watch = berth(&root)
        .docker(&dockerd)
        .args(["watch", "--fleet-retry-secs", "1"])
        .args(p_args(&profiles))
        .spawn();
    let retried = within(std::time::Duration::from_secs(60), || {
        lock.refusals("host-w") >= 3
    });
    assert!(
        retried.is_some(),
        "watch asks again, 1 s then 2 s later: {:?}\n{}",
        lock.events(),
        watch.output()
    );
    assert_eq!(dockerd.pid(), pid, "no restart without a slot");
    assert!(
        watch
            .output()
            .contains("disruptive steps wait for a fleet slot: trying again in 2 s"),
        "{}",
        watch.output()
    );

    lock.free("runners-test", "host-other");
    let released = within(std::time::Duration::from_secs(60), || {
        lock.events()
            .iter()
            .any(|(_, id, event)| id == "host-w" && *event == "release")
    });
    assert!(
        released.is_some(),
        "watch took the freed slot, restarted Docker and gave it back: {:?}\n{}",
        lock.events(),
        watch.output()
    );
    assert_ne!(dockerd.pid(), pid, "Docker restarted in the slot");
    assert!(lock.holders("runners-test").is_empty());
    assert_eq!(
        watch.signal_and_wait(15, std::time::Duration::from_secs(30)),
        Some(0)
    );
    berth(&root)
        .docker(&dockerd)
        .args(p_args(&profiles))
        .converged();
}
