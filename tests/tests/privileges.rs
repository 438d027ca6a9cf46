//! Least privilege: `dnslb run --user nobody` on the veth rig gives up root
//! and every capability once it has attached and bound, its command checks
//! run as that user in a clean environment and die whole on a time-out,
//! and health changes still reach the kernel's answers.

use std::{
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt,
    thread,
    time::{Duration, Instant},
};

use dnslb_tests::{
    daemon::{Daemon, ZoneFile, policy_file, until_a_records},
    netns::Rig,
};

/// The user the test daemon becomes; on every Debian system.
const USER: &str = "nobody";

/// The lines of `/proc/PID/status` that start with `field`.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_default()
}

/// Processes whose command line holds `marker`.
fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|line| {
                String::from_utf8_lossy(&line)
                    .replace('\0', " ")
                    .contains(marker)
            })
        })
        .count()
}

#[test]
fn the_daemon_runs_as_its_user_with_no_capabilities() {
    let rig = Rig::new().unwrap();
    let policy = policy_file("privileges", "user", "");
    let dir = policy.parent().unwrap().to_owned();
    // The user writes here: its state, and the checks' reports.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let uid_file = dir.join("uid");
    let env_file = dir.join("env");
    let down_flag = dir.join("198.18.10.2.down");
    let _ = std::fs::remove_file(&down_flag);
    // A duration no other test sleeps for: how its processes are found.
    let marker = format!("sleep 29.{}", std::process::id() % 1000);
    std::fs::write(
        &policy,
        format!(
            r#"
[check.flag]
kind = "command"
command = "id -u > {uid}; env > {env}; test ! -e {dir}/$DNSLB_ADDRESS.down"
interval = "100ms"
timeout = "100ms"
rise = 1
fall = 1

[check.stuck]
kind = "command"
command = "{marker} | cat"
interval = "2s"
timeout = "100ms"

[pool.web]
check = "flag"
endpoints = ["198.18.10.1", "198.18.10.2"]

[pool.stuck]
check = "stuck"
endpoints = ["198.18.20.1"]

[service.web]
name = "web.example.com."
ttl = 1
policy = {{ kind = "multivalue", pool = "web" }}

[service.stuck]
name = "stuck.example.com."
policy = {{ kind = "simple", pool = "stuck" }}
"#,
            uid = uid_file.display(),
            env = env_file.display(),
            dir = dir.display(),
        ),
    )
    .unwrap();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    nix::unistd::chown(&state, Some(65534.into()), None).unwrap();
    let config = policy.to_str().unwrap();
    let daemon = Daemon::start_on_rig(
        &rig,
        &ZoneFile::example(),
        true,
        &[
            "--config",
            config,
            "--user",
            USER,
            "--state-dir",
            state.to_str().unwrap(),
        ],
    )
    .unwrap();
    let _pass = rig.attach_client_pass_through().unwrap();

    let pid = daemon.pid();
    let uids = status_field(pid, "Uid:");
    assert!(
        uids.split_whitespace().all(|uid| uid == "65534"),
        "real, effective, saved and file uid are nobody's: {uids}"
    );
    for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        assert_eq!(status_field(pid, set), "0000000000000000", "{set}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    // Every thread, not just the first.
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        assert!(status.contains("NoNewPrivs:\t1"), "{status}");
        assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    }

    // The checks run as the user, with only PATH and their two variables.
    let deadline = Instant::now() + Duration::from_secs(5);
    // The command writes the two files one after the other: both, whole.
    let written = |file: &std::path::Path| {
        std::fs::read_to_string(file).is_ok_and(|text| text.ends_with('\n'))
    };
    while !(written(&uid_file) && written(&env_file)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&uid_file).unwrap().trim(), "65534");
    let env = std::fs::read_to_string(&env_file).unwrap();
    let mut names: Vec<&str> = env
        .lines()
        .filter_map(|line| line.split('=').next())
        // What sh itself sets.
        .filter(|name| !["PWD", "SHLVL", "_", "OLDPWD"].contains(name))
        .collect();
    names.sort();
    assert_eq!(names, ["DNSLB_ADDRESS", "DNSLB_PORT", "PATH"], "{env}");

    // A health change, seen by the unprivileged daemon, reaches the
    // kernel's answers.
    let both = [Ipv4Addr::new(198, 18, 10, 1), Ipv4Addr::new(198, 18, 10, 2)];
    let limit = Duration::from_secs(5);
    assert!(until_a_records(&rig.client, "web.example.com", &both, limit).is_some());
    std::fs::write(&down_flag, "").unwrap();
    assert!(
        until_a_records(&rig.client, "web.example.com", &both[..1], limit).is_some(),
        "the down endpoint left the answers"
    );
    std::fs::remove_file(&down_flag).unwrap();
    assert!(until_a_records(&rig.client, "web.example.com", &both, limit).is_some());

    // The stuck check times out after 100 ms, every 2 s; its pipeline
    // dies whole each time (the next starts 1.9 s later).
    let failed_once = |daemon: &Daemon| {
        let health = daemon.cli(&["health", "--json"]).unwrap();
        let rows: serde_json::Value = serde_json::from_str(&health).unwrap();
        rows.as_array().into_iter().flatten().any(|row| {
            row["address"] == "198.18.20.1"
                && row["failures_in_row"] == 1
                && row["last_failure"]
                    .as_str()
                    .is_some_and(|why| !why.is_empty())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !failed_once(&daemon) {
        assert!(Instant::now() < deadline, "the stuck check never timed out");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(processes_with(&marker), 0, "no `{marker}` left");
    drop(daemon);
    assert_eq!(processes_with(&marker), 0);
}
