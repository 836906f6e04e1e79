//! doctor's end-to-end check of dind: from inside each profile container that talks to a Docker
//! daemon over TCP, reach that daemon the way the container's jobs will.

use super::{Check, Verdict, not_created};
use crate::{
    docker::{DaemonStatus, Docker, wire::ContainerInfo},
    resource::profile::Profile,
};

/// Run inside a runner container: reaches the Docker daemon named by the container's own
/// DOCKER_HOST the way its jobs will, with the best tool the image has (the docker CLI, which
/// reads DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH as jobs do; curl, for TLS with the
/// client certificates; wget; a bare TCP connect with nc). Prints `ok METHOD` on success, or
/// why not: with the docker CLI, in the daemon's own words, also when a client certificate file
/// is missing (what the daemon says to a client without one).
const DIND_PROBE: &str = r#"
case "${DOCKER_HOST:-}" in
    tcp://*) ;;
    *) echo "DOCKER_HOST is not a tcp:// address" >&2; exit 4 ;;
esac
address=${DOCKER_HOST#tcp://}
address=${address%%/*}
host=${address%:*}
port=${address##*:}
limit=
command -v timeout >/dev/null 2>&1 && limit="timeout 10"
tls=
if [ -n "${DOCKER_TLS_VERIFY:-}" ] && [ "$DOCKER_TLS_VERIFY" != 0 ]; then
    tls=1
    certs=${DOCKER_CERT_PATH:-$HOME/.docker}
    for file in ca.pem cert.pem key.pem; do
        [ -s "$certs/$file" ] && continue
        if command -v docker >/dev/null 2>&1; then
            ca=
            [ -s "$certs/ca.pem" ] && ca="--tlscacert $certs/ca.pem"
            said=$(DOCKER_TLS_VERIFY= DOCKER_CERT_PATH= $limit docker --tls $ca version --format '{{.Server.Version}}' 2>&1 >/dev/null | tr '\n' ' ')
            [ -n "$said" ] && { echo "TLS is on but $certs/$file is missing or empty; without a client certificate the daemon says: $said" >&2; exit 3; }
        fi
        echo "TLS is on but $certs/$file is missing or empty" >&2
        exit 3
    done
fi
if command -v docker >/dev/null 2>&1; then
    server=$($limit docker version --format '{{.Server.Version}}')
    status=$?
    [ "$status" -eq 0 ] && { echo "ok Docker Engine $server answers \`docker version\` at $DOCKER_HOST"; exit 0; }
    [ "$status" -lt 128 ] && exit 1
fi
# A tool that exits on a signal (a static busybox wget can crash in a bare image) proves
# nothing either way: fall through to the next one.
if command -v curl >/dev/null 2>&1; then
    if [ -n "$tls" ]; then
        curl -fsS --max-time 5 --cacert "$certs/ca.pem" --cert "$certs/cert.pem" --key "$certs/key.pem" "https://$address/_ping" >/dev/null
    else
        curl -fsS --max-time 5 "http://$address/_ping" >/dev/null
    fi
    status=$?
    [ "$status" -eq 0 ] && { echo "ok GET $address/_ping (curl)"; exit 0; }
    [ "$status" -lt 128 ] && exit 1
fi
if [ -z "$tls" ] && command -v wget >/dev/null 2>&1; then
    wget -q -T 5 -O /dev/null "http://$address/_ping"
    status=$?
    [ "$status" -eq 0 ] && { echo "ok GET http://$address/_ping (wget)"; exit 0; }
    [ "$status" -lt 128 ] && exit 1
fi
if command -v nc >/dev/null 2>&1; then
    nc -w 5 "$host" "$port" </dev/null >/dev/null 2>&1 && { echo "ok TCP connect to $address (nc; no curl here to speak to it)"; exit 0; }
    echo "cannot connect to $address" >&2
    exit 1
fi
echo "no curl, wget or nc in the container to reach $address" >&2
exit 5
"#;

/// How long the probe may take in all (each of its tools gives up after 10 s).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The most of the probe's output berth reads: it prints one line.
const PROBE_LIMIT: u64 = 64 * 1024;

/// What the container said, as doctor shows it: control characters dropped, cut short.
fn shown(said: &str) -> String {
    said.chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .take(1000)
        .collect()
}

/// End to end: every profile container that talks to a Docker daemon over TCP (the runner, in
/// the dind profiles) reaches it from inside, as its jobs will.
pub(super) fn dind_from_runner(
    docker: &Docker,
    status: &DaemonStatus,
    profile: &Profile,
    applied: bool,
) -> Vec<Check> {
    let mut checks = Vec::new();
    // One batched inspect: which of them exist, and run.
    let existing = match status {
        DaemonStatus::Running(_) => {
            let names: Vec<String> = profile
                .containers
                .iter()
                .map(|container| container.name.as_str().to_owned())
                .collect();
            crate::docker::fetch::<ContainerInfo>(docker.engine(), &names).ok()
        }
        _ => None,
    };
    for container in &profile.containers {
        let Some(address) = container
            .env
            .get("DOCKER_HOST")
            .filter(|address| address.starts_with("tcp://"))
        else {
            continue;
        };
        let name = format!("{} → {address}", container.name.as_str());
        if !matches!(status, DaemonStatus::Running(_)) {
            checks.push(Check::new(
                &name,
                Verdict::Skip,
                "the host's Docker daemon does not answer",
            ));
            continue;
        }
        match existing
            .as_ref()
            .map(|existing| existing.found.get(container.name.as_str()))
        {
            Some(None) => {
                let what = format!("container `{}`", container.name.as_str());
                checks.push(not_created(&name, applied, &what));
                continue;
            }
            Some(Some(info)) if !info.state.running => {
                checks.push(
                    Check::new(
                        &name,
                        Verdict::Fail,
                        format!("`{}` is {}", container.name.as_str(), info.state.status),
                    )
                    .fix(format!(
                        "`berth apply` starts it; `docker logs {}` says why it stopped",
                        container.name.as_str()
                    )),
                );
                continue;
            }
            _ => {}
        }
        // Through an exec by the API: the host starts no `docker` process; what the probe
        // prints is the container's, so it is read bounded and shown without control characters.
        let probe = docker.engine().exec(
            container.name.as_str(),
            &["sh", "-c", DIND_PROBE],
            &[],
            PROBE_TIMEOUT,
            PROBE_LIMIT,
        );
        checks.push(match probe {
            Ok(output) if output.success() => {
                let said = shown(output.stdout.lines().last().unwrap_or_default());
                Check::new(&name, Verdict::Ok, said.strip_prefix("ok ").unwrap_or(&said).to_owned())
            }
            failed => {
                let said = match failed {
                    Ok(output) => {
                        let stderr = shown(output.stderr.trim());
                        if stderr.is_empty() {
                            format!("the probe exited with status {}", output.code.unwrap_or(-1))
                        } else {
                            stderr
                        }
                    }
                    Err(error) => error.to_string(),
                };
                Check::new(&name, Verdict::Fail, format!("the Docker daemon does not answer from inside `{}`: {said}", container.name.as_str()))
                    .fix("`berth apply` starts and wires the containers; `docker logs` on the dind container says why it is not serving")
            }
        });
    }
    checks
}
