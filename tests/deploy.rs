//! The configurations shipped in deploy/ load as the gateway will load them
//! (Debian conffile, container image, Kubernetes ConfigMap), and the systemd
//! unit's reload command makes a running gateway re-read its users file.
//! scripts/check-deploy lints the same files with systemd-analyze, hadolint and
//! checkov; scripts/package-test installs the Debian package for real.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::eventually::{PATIENCE, eventually_blocking};
use support::{Gateway, SECRET};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check_config(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(support::binary());
    // The files these configs name live on the machine they are for.
    cmd.args(["check-config", "--no-files", "--config"]).arg(config).env_remove("PORTCULLIS_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_debian_conffile_needs_the_secret_its_postinst_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    let shipped = read("deploy/debian/portcullis.toml");
    std::fs::write(&path, &shipped).unwrap();
    let out = check_config(&path, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("auth.secret"), "{}", stderr(&out));

    // postinst replaces exactly this line.
    assert_eq!(shipped.lines().filter(|l| *l == "secret = \"\"").count(), 1);
    std::fs::write(&path, shipped.replace("secret = \"\"", &format!("secret = \"{SECRET}\""))).unwrap();
    let out = check_config(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("users_file = \"/etc/portcullis/users.toml\""), "{printed}");
    assert!(printed.contains("state_file = \"/var/lib/portcullis/state.json\""), "{printed}");
}

#[test]
fn the_container_and_kubernetes_configs_load_with_the_secret_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let configmap = read("deploy/kubernetes/configmap.yaml");
    let body = configmap.split_once("portcullis.toml: |\n").expect("portcullis.toml key").1;
    let k8s: String = body.lines().map_while(|l| l.strip_prefix("    ").or(l.is_empty().then_some(""))).fold(
        String::new(),
        |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        },
    );
    // The variables compose.yaml and deployment.yaml set from their secrets.
    let deployment = read("deploy/kubernetes/deployment.yaml");
    assert!(deployment.contains("- name: PORTCULLIS_MAIL__SMTP_PASSWORD"), "{deployment}");
    let docker_env: &[(&str, &str)] = &[("PORTCULLIS_AUTH__SECRET", SECRET)];
    let k8s_env: &[(&str, &str)] = &[("PORTCULLIS_AUTH__SECRET", SECRET), ("PORTCULLIS_MAIL__SMTP_PASSWORD", "pw")];
    for (name, text, env) in
        [("docker", read("deploy/docker/portcullis.toml"), docker_env), ("kubernetes", k8s, k8s_env)]
    {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = check_config(&path, &env[1..]);
        assert_eq!(out.status.code(), Some(1), "{name} loads without a secret");
        assert!(stderr(&out).contains("auth.secret"), "{name}: {}", stderr(&out));
        let out = check_config(&path, env);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    }
}

#[test]
fn the_image_health_check_probes_the_configured_listener() {
    // The Dockerfile's HEALTHCHECK runs `portcullis healthcheck` with no URL:
    // it must find the container config's listener on loopback.
    let dockerfile = read("deploy/docker/Dockerfile");
    assert!(dockerfile.contains(r#"CMD ["/usr/local/bin/portcullis", "healthcheck"]"#), "{dockerfile}");
    let up_port = support::free_port();
    let port = support::free_port();
    let config = read("deploy/docker/portcullis.toml")
        .replace("listen = \"0.0.0.0:8080\"", &format!("listen = \"0.0.0.0:{port}\""))
        .replace("metrics_listen = \"0.0.0.0:9090\"", "metrics_listen = \"127.0.0.1:0\"")
        .replace("http://app:80", &format!("http://127.0.0.1:{up_port}"));
    // Outlives the gateway (whose directory goes with it), for the last probe.
    let keep = tempfile::tempdir().unwrap();
    let users = support::empty_users(keep.path());
    let env = [
        ("PORTCULLIS_AUTH__SECRET", SECRET),
        ("PORTCULLIS_AUTH__USERS_FILE", users.to_str().unwrap()),
        ("PORTCULLIS_STORE__URL", "memory://"),
    ];
    let config_path = keep.path().join("portcullis.toml");
    std::fs::write(&config_path, &config).unwrap();
    let gw = Gateway::start_in(tempfile::tempdir().unwrap(), &config, &env);
    let probe = || {
        Command::new(support::binary())
            .args(["healthcheck"])
            .env("PORTCULLIS_CONFIG", &config_path)
            .env("PORTCULLIS_AUTH__USERS_FILE", &users)
            .output()
            .unwrap()
    };
    let out = probe();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    drop(gw);
    let out = probe();
    assert_eq!(out.status.code(), Some(2), "a stopped gateway is unhealthy");
}

#[tokio::test]
async fn the_units_reload_command_makes_the_gateway_reread_its_users() {
    let unit = read("deploy/systemd/portcullis.service");
    let reload = unit.lines().find_map(|l| l.strip_prefix("ExecReload=")).expect("ExecReload");
    let up = support::upstream::Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = support::empty_users(dir.path());
    let gw = Gateway::start_in(dir, &support::base_config(&up.url(), "two_factor", &users), &[]);
    let reloaded = "\"message\":\"users file reloaded\"";
    let before = gw.log().matches(reloaded).count();

    // What systemd runs on `systemctl reload portcullis`, with $MAINPID filled in.
    let command = reload.replace("$MAINPID", &gw.pid().to_string());
    let mut words = command.split_whitespace();
    let status = Command::new(words.next().unwrap()).args(words).status().unwrap();
    assert!(status.success(), "{command}");

    let reload = format!("a reload after {command}");
    eventually_blocking(reload, PATIENCE, || (gw.log().matches(reloaded).count() > before).then_some(()));
    let line = gw.log().lines().rfind(|l| l.contains(reloaded)).unwrap_or_default().to_string();
    assert!(line.contains("\"reason\":\"SIGHUP\""), "{line}");
}

/// deploy/nginx/nginx.conf is complete: nginx accepts it with portcullis.conf
/// beside it, copied as an operator would (the forward-auth tests run it too).
#[test]
fn the_shipped_nginx_conf_is_accepted_by_nginx_t() {
    let Some(nginx) = support::proxies::Proxy::Nginx.program() else { return };
    let dir = tempfile::tempdir().unwrap();
    let am_root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
    let user = if am_root { "user root root;\n" } else { "" };
    std::fs::write(dir.path().join("nginx.conf"), format!("{user}{}", read("deploy/nginx/nginx.conf"))).unwrap();
    std::fs::write(dir.path().join("portcullis.conf"), read("deploy/nginx/portcullis.conf")).unwrap();
    let out = Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nginx -t: {said}");
    assert!(said.contains("syntax is ok") && said.contains("test is successful"), "{said}");
}

/// `kubectl apply -k deploy/kubernetes` applies no Secret: a Secret with the
/// example's placeholders would replace the real one the operator created.
#[test]
fn the_kustomization_applies_no_secret() {
    let kustomization = read("deploy/kubernetes/kustomization.yaml");
    let resources: Vec<&str> = kustomization
        .lines()
        .skip_while(|l| *l != "resources:")
        .skip(1)
        .map_while(|l| l.strip_prefix("  - "))
        .collect();
    assert!(resources.contains(&"deployment.yaml"), "{kustomization}");
    for file in resources {
        let text = read(&format!("deploy/kubernetes/{file}"));
        assert!(
            !text.lines().any(|l| l.trim() == "kind: Secret"),
            "deploy/kubernetes/{file} is in kustomization.yaml and holds a Secret"
        );
    }
    assert!(!kustomization.contains("secretGenerator"), "{kustomization}");
}

/// The example Secret's values, given to the gateway as the Deployment
/// gives them, are refused with the keys they land in.
#[test]
fn the_example_secrets_placeholders_are_refused_by_check_config() {
    let example = read("deploy/kubernetes/secret.example.yaml");
    let value = |key: &str| {
        let line = example.lines().find_map(|l| l.trim().strip_prefix(&format!("{key}: "))).expect(key);
        line.trim_matches('"').to_string()
    };
    let (secret, smtp) = (value("auth-secret"), value("smtp-password"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubernetes.toml");
    let configmap = read("deploy/kubernetes/configmap.yaml");
    let body = configmap.split_once("portcullis.toml: |\n").expect("portcullis.toml key").1;
    let text: Vec<&str> = body.lines().map(|l| l.strip_prefix("    ").unwrap_or(l)).collect();
    std::fs::write(&path, text.join("\n")).unwrap();
    let out = check_config(&path, &[("PORTCULLIS_AUTH__SECRET", &secret), ("PORTCULLIS_MAIL__SMTP_PASSWORD", &smtp)]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for key in ["auth.secret: is a placeholder", "mail.smtp_password: is a placeholder"] {
        assert!(said.contains(key), "{key:?} not in: {said}");
    }
}

/// `serve` refuses the same secret before it listens, naming the key.
#[test]
fn serve_refuses_a_guessable_secret() {
    let dir = tempfile::tempdir().unwrap();
    let users = support::empty_users(dir.path());
    let path = dir.path().join("portcullis.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n[auth]\nsecret = \"{}\"\nusers_file = \"{}\"\n",
        "0123456789abcdef".repeat(3),
        users.display()
    );
    std::fs::write(&path, text).unwrap();
    let out = Command::new(support::binary())
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("auth.secret: is too easy to guess"), "{}", stderr(&out));
}

/// The quickstart's kubectl commands create the Secrets, keys and image the
/// Deployment reads.
#[test]
fn the_quickstarts_kubernetes_commands_match_the_deployment() {
    let quickstart = read("docs/quickstart.md");
    let deployment = read("deploy/kubernetes/deployment.yaml");
    let lines: Vec<&str> = deployment.lines().map(str::trim).collect();
    // env: valueFrom.secretKeyRef {name, key}
    for (i, l) in lines.iter().enumerate() {
        if *l == "secretKeyRef:" {
            let name = lines[i + 1].strip_prefix("name: ").expect("secretKeyRef name");
            let key = lines[i + 2].strip_prefix("key: ").expect("secretKeyRef key");
            let created = format!("create secret generic {name} \\");
            assert!(quickstart.contains(&created), "the quickstart does not create Secret {name}");
            assert!(quickstart.contains(&format!("--from-literal={key}=")), "Secret {name} lacks {key}");
        }
    }
    let users = lines.iter().find_map(|l| l.strip_prefix("secretName: ")).expect("the users volume's Secret");
    let key = lines.iter().find_map(|l| l.strip_prefix("- key: ")).expect("its key");
    let create = format!("create secret generic {users} --from-file={key}=./users.toml");
    assert!(quickstart.contains(&create), "the quickstart lacks `{create}`");
    let image = lines.iter().find_map(|l| l.strip_prefix("image: ")).expect("image");
    assert!(quickstart.contains(&format!("-t {image} ")), "the quickstart does not build {image}");
    assert!(lines.contains(&"imagePullPolicy: IfNotPresent"), "a loaded image must run without a registry");
}
