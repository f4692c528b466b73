//! Escape attempts: R code sent through the in-cluster MCP frontend (`execute_in_session`)
//! into real session pods, trying what a hostile or careless agent would: privileges, the
//! filesystem, credentials, the network, and resources. Each attempt is one named test.
//! All `#[ignore]`: `e2e/run-e2e.sh` runs them with `--ignored --test-threads=1`.

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use rsession_api::well_known as wk;
use rsession_e2e::*;
use serde_json::json;

/// Lines of `out` that start with `key` and a space or tab, without the key.
fn field<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|l| l.strip_prefix(key))
        .filter_map(|l| l.strip_prefix([' ', '\t']))
        .map(str::trim)
        .collect()
}

/// The value of a `/proc/<pid>/status` line `key:` in `out`.
fn status_line<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh)"]
async fn r_runs_as_uid_1000_without_capabilities_or_new_privileges() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-identity").await?;
    let id = agent.create_session().await?;
    let out = agent
        .eval(
            &id,
            "cat('UID', system('id -u', intern = TRUE), '\\n')
             cat('GID', system('id -g', intern = TRUE), '\\n')
             cat(readLines('/proc/self/status'), sep = '\\n')",
        )
        .await?;
    println!("{out}");
    ensure!(field(&out, "UID") == ["1000"], "id -u: {out}");
    ensure!(field(&out, "GID") == ["1000"], "id -g: {out}");
    ensure!(
        status_line(&out, "NoNewPrivs") == Some("1"),
        "NoNewPrivs: {out}"
    );
    for cap in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        ensure!(
            status_line(&out, cap) == Some("0000000000000000"),
            "{cap} is not empty: {out}"
        );
    }
    for ids in ["Uid", "Gid"] {
        let v: Vec<&str> = status_line(&out, ids)
            .context("no Uid/Gid line")?
            .split_whitespace()
            .collect();
        ensure!(
            v == ["1000"; 4],
            "{ids} (real, effective, saved, fs): {v:?}"
        );
    }
    agent.finish().await
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh)"]
async fn su_and_sudo_do_not_give_root() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-su").await?;
    let id = agent.create_session().await?;
    // stdin is /dev/null: no terminal, no password. With NoNewPrivs a set-uid binary cannot
    // raise the effective uid either, whatever it is asked.
    let out = agent
        .eval(
            &id,
            "run <- function(cmd, args) {
               r <- suppressWarnings(tryCatch(system2(cmd, args, stdout = TRUE, stderr = TRUE, stdin = '/dev/null'),
                                              error = function(e) structure(conditionMessage(e), status = 127L)))
               st <- attr(r, 'status'); if (is.null(st)) st <- 0L
               c(sprintf('STATUS %d', st), paste('OUT', r))
             }
             cat(paste0(run('su', c('-c', shQuote('id -u'), 'root')), '\\n'), sep = '')
             cat('SUDO_PATH', Sys.which('sudo'), '\\n')
             cat(paste0(run('sudo', c('-n', 'id', '-u')), '\\n'), sep = '')",
        )
        .await?;
    println!("{out}");
    let statuses = field(&out, "STATUS");
    ensure!(statuses.len() == 2, "two attempts expected: {out}");
    ensure!(
        statuses.iter().all(|s| *s != "0"),
        "su or sudo succeeded: {out}"
    );
    ensure!(
        !field(&out, "OUT").contains(&"0"),
        "an attempt printed uid 0: {out}"
    );
    agent.finish().await
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh)"]
async fn root_filesystem_and_usr_are_read_only() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-rofs").await?;
    let id = agent.create_session().await?;
    let out = agent
        .eval(
            &id,
            "for (p in c('/e2e-probe', '/usr/e2e-probe', '/usr/lib/R/library/e2e-probe', '/etc/e2e-probe',
                       '/var/e2e-probe', '/etc/rserve/e2e-probe', '/workspace/e2e-probe', '/tmp/e2e-probe')) {
               r <- tryCatch({ writeLines('x', p); 'written' },
                             warning = function(w) 'failed', error = function(e) 'failed')
               sh <- system(paste('touch', shQuote(paste0(p, '-sh')), '2>/dev/null'))
               cat('WRITE', p, r, if (sh == 0) 'written' else 'failed', '\\n')
             }
             m <- strsplit(readLines('/proc/self/mounts'), ' ')
             root <- Filter(function(f) f[2] == '/', m)
             cat('ROOT_OPTS', vapply(root, `[`, '', 4), '\\n')",
        )
        .await?;
    println!("{out}");
    let writes = field(&out, "WRITE");
    ensure!(writes.len() == 8, "eight write attempts expected: {out}");
    for w in writes {
        let v: Vec<&str> = w.split_whitespace().collect();
        let writable = v[0] == "/workspace/e2e-probe" || v[0] == "/tmp/e2e-probe";
        let expect = if writable { "written" } else { "failed" };
        ensure!(
            v[1] == expect && v[2] == expect,
            "{}: R {}, shell {} (expected {expect})",
            v[0],
            v[1],
            v[2]
        );
    }
    let root = field(&out, "ROOT_OPTS");
    ensure!(
        root.iter().any(|o| o.split(',').next() == Some("ro")),
        "/ is not mounted read-only: {root:?}"
    );
    agent.finish().await
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh)"]
async fn no_service_account_token_anywhere() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-token").await?;
    let id = agent.create_session().await?;
    let out = agent
        .eval(
            &id,
            "emit <- function(key, x) cat(paste0(key, ' ', x, '\\n'), sep = '')
             dirs <- c('/var/run/secrets', '/run/secrets', '/secrets', '/var/lib/kubelet')
             emit('SECRET_FILE', unlist(lapply(dirs, list.files, recursive = TRUE, full.names = TRUE, all.files = TRUE)))
             emit('TOKEN_FILE', list.files(c('/run', '/var/run', '/etc', '/workspace', '/tmp'), pattern = '^token$',
                                           recursive = TRUE, full.names = TRUE, all.files = TRUE))
             env <- Sys.getenv()
             emit('TOKEN_ENV', names(env)[grepl('TOKEN', names(env), ignore.case = TRUE)])
             emit('JWT_ENV', names(env)[grepl('eyJ[A-Za-z0-9_-]+\\\\.eyJ', env)])
             emit('SA_MOUNT', grep('serviceaccount|kubernetes.io', readLines('/proc/self/mounts'), value = TRUE))
             cat('CHECKED\\n')",
        )
        .await?;
    println!("{out}");
    ensure!(out.contains("CHECKED"), "the search did not finish: {out}");
    for key in [
        "SECRET_FILE",
        "TOKEN_FILE",
        "TOKEN_ENV",
        "JWT_ENV",
        "SA_MOUNT",
    ] {
        let hits: Vec<&str> = field(&out, key)
            .into_iter()
            .filter(|h| !h.is_empty())
            .collect();
        ensure!(hits.is_empty(), "{key}: {hits:?}");
    }
    agent.finish().await
}

/// Every cluster endpoint a session without egress rules must not reach, each reported.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed and NetworkPolicy enforced"]
async fn session_reaches_no_cluster_endpoint() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-net").await?;
    let victim = Agent::new(&client, "e2e-escape-victim").await?;
    let id = agent.create_session().await?;
    let other = victim.create_session().await?;
    let ns = sessions_ns()?;

    let node = node_ip(&client).await?;
    let kubernetes: Service = Api::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await?;
    let api_ip = kubernetes
        .spec
        .and_then(|s| s.cluster_ip)
        .context("kubernetes Service has no clusterIP")?;
    let other_rs = get_rsession(&client, &ns, &other).await?;
    let other_pod = session_pod(&client, &ns, &other_rs).await?;
    let other_ip = other_pod
        .status
        .and_then(|s| s.pod_ip)
        .context("other session pod has no IP")?;
    let (mcp_ip, mcp_port) = component_http(&client, "mcp").await?;
    let (op_ip, op_port) = component_http(&client, "operator").await?;

    let mut targets = vec![
        Target::new("kubernetes.default (ClusterIP)", &api_ip, 443),
        Target::new(
            "kubernetes.default (DNS name)",
            "kubernetes.default.svc.cluster.local",
            443,
        ),
        Target::new("kube-apiserver (node address)", &node, 6443),
        Target::new("kubelet", &node, 10250),
        Target::new("PostgreSQL on the node (no database in spec)", &node, 5432),
        Target::new("cluster DNS (TCP)", "10.96.0.10", 53),
        Target::new(
            "another session's Rserve (pod IP)",
            &other_ip,
            wk::RSERVE_PORT as u16,
        ),
        Target::new("MCP frontend (pod IP)", &mcp_ip, mcp_port),
        Target::new("operator metrics (pod IP)", &op_ip, op_port),
    ];
    let other_svc = format!("{}={other}", wk::LABEL_SESSION);
    match service_address(&client, &ns, &other_svc).await? {
        Some((ip, port)) => {
            targets.push(Target::new("another session's Rserve (Service)", ip, port))
        }
        None => println!("(the other session has no Service: only its pod IP is tried)"),
    }
    let mcp_sel = format!("{}=mcp", wk::LABEL_APP_COMPONENT);
    if let Some((ip, port)) = service_address(&client, &system_ns()?, &mcp_sel).await? {
        targets.push(Target::new("MCP frontend (Service)", ip, port));
    }

    let results = probe_from_session(&agent, &id, &targets).await?;
    print_probe_table("TCP from a session without egress rules:", &results).await;
    // Name resolution (UDP to the pod's resolver) is not allowed either; `nsl` resolves in R's
    // own process.
    let dns = agent
        .eval(
            &id,
            "ns <- grep('^nameserver', readLines('/etc/resolv.conf'), value = TRUE)
             cat('RESOLVER', ns, '\\n')
             cat('RESOLVED', utils::nsl('kubernetes.default.svc.cluster.local.'), '\\n')",
        )
        .await?;
    println!("{dns}");
    let resolved = field(&dns, "RESOLVED");
    ensure!(
        resolved == [""],
        "a cluster name resolved from the session: {dns}"
    );
    let open: Vec<String> = results
        .iter()
        .filter(|r| r.open)
        .map(|r| format!("{} {}:{}", r.target.name, r.target.host, r.target.port))
        .collect();
    ensure!(open.is_empty(), "reachable from the session: {open:?}");
    // The victim still works: the attempts did not disturb it.
    ensure!(victim.eval(&other, "cat(6 * 7)").await? == "42");
    victim.finish().await?;
    agent.finish().await
}

/// The NetworkPolicy is in force before R first runs: the first evaluation after
/// `create_session` cannot reach the API server.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed and NetworkPolicy enforced"]
async fn first_evaluation_already_runs_under_the_policy() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-first").await?;
    let node = node_ip(&client).await?;
    let kubernetes: Service = Api::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await?;
    let api_ip = kubernetes
        .spec
        .and_then(|s| s.cluster_ip)
        .context("kubernetes Service has no clusterIP")?;
    let targets = [
        Target::new("kubernetes.default (ClusterIP)", api_ip, 443),
        Target::new("kube-apiserver (node address)", node, 6443),
    ];
    let id = agent.create_session().await?;
    let results = probe_from_session(&agent, &id, &targets).await?;
    print_probe_table("First evaluation of a fresh session:", &results).await;
    ensure!(
        results.iter().all(|r| !r.open),
        "the first evaluation reached the API server: {results:#?}"
    );
    agent.finish().await
}

/// An agent of its own (named `name`) holding one adopted session `name` whose spec names the
/// synthetic OMOP CDM's Secret.
async fn omop_session(name: &str) -> Result<Agent> {
    let client = client().await?;
    let agent = Agent::new(&client, name).await?;
    omop_secret(&client, &agent.ns).await?;
    adopted_session(
        &client,
        &agent,
        name,
        json!({"database": {"secretRef": {"name": OMOP_SECRET}}}),
    )
    .await?;
    Ok(agent)
}

/// Positive control: a session with `spec.database.secretRef` reaches its PostgreSQL and
/// queries it; the kubelet stays closed to it.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed and e2e/local/omop-postgres.sh"]
async fn database_session_reaches_postgres_and_nothing_else() -> Result<()> {
    let name = "e2e-escape-db";
    let agent = omop_session(name).await?;
    let client = client().await?;
    let out = agent
        .eval(
            name,
            "con <- DBI::dbConnect(RPostgreSQL::PostgreSQL(), host = Sys.getenv('PGHOST'),
                 port = as.integer(Sys.getenv('PGPORT')), dbname = Sys.getenv('PGDATABASE'),
                 user = Sys.getenv('PGUSER'))
             cat('PERSONS', DBI::dbGetQuery(con, paste0('SELECT count(*) FROM ', Sys.getenv('CDM_SCHEMA'), '.person'))[[1]], '\\n')
             DBI::dbDisconnect(con)",
        )
        .await?;
    let persons: i64 = field(&out, "PERSONS")
        .first()
        .with_context(|| format!("no count in {out}"))?
        .parse()?;
    ensure!(persons > 0, "no persons in the CDM");
    let node = node_ip(&client).await?;
    let pg_port: u16 = env("RSESSION_E2E_PG_PORT")?.parse()?;
    let results = probe_from_session(
        &agent,
        name,
        &[
            Target::new(
                "PostgreSQL (database in spec)",
                env("RSESSION_E2E_PG_HOST")?,
                pg_port,
            ),
            Target::new("kubelet", &node, 10250),
            Target::new("kube-apiserver (node address)", &node, 6443),
        ],
    )
    .await?;
    print_probe_table("TCP from a database session:", &results).await;
    ensure!(
        results[0].open,
        "PostgreSQL not reachable: {:?}",
        results[0]
    );
    ensure!(
        results[1..].iter().all(|r| !r.open),
        "the database session reached more than its database: {results:#?}"
    );
    agent.finish().await
}

/// R code that looks for `password` everywhere R can: the environment, every `/proc/<pid>/environ`
/// and `cmdline` R can see, and every file it can read (a recursive grep of the filesystem,
/// with a planted copy as a control). The password reaches R as code points in variable `pw`
/// (which code appended after this may use), so that no file holding this code (the harness's
/// spool, a checkpoint) holds the password itself. Prints the lines [`ensure_not_found`] reads.
fn password_search_r(password: &str) -> String {
    let points: Vec<String> = password.chars().map(|c| u32::from(c).to_string()).collect();
    format!(
        r#"pw <- intToUtf8(c({points}))
        env <- Sys.getenv()
        cat("ENV_HITS", sum(grepl(pw, env, fixed = TRUE)) + sum(grepl(pw, names(env), fixed = TRUE)), "\n")
        # every process R can see (no shared process namespace: R's own)
        procs <- list.files("/proc", pattern = "^[0-9]+$", full.names = TRUE)
        hits <- 0L
        for (f in c(file.path(procs, "environ"), file.path(procs, "cmdline"))) {{
          b <- tryCatch(readBin(f, "raw", 1e6), error = function(e) raw(0))
          b[b == as.raw(0)] <- as.raw(10)
          if (grepl(pw, rawToChar(b), fixed = TRUE, useBytes = TRUE)) hits <- hits + 1L
        }}
        cat("PROC_FILES", length(procs) * 2, "PROC_HITS", hits, "\n")
        # every file R can read; the pattern travels in grep's argv only
        found <- suppressWarnings(system2("grep", c("-rlsF", "--exclude-dir=proc", "--exclude-dir=sys",
          "--exclude-dir=dev", "-e", shQuote(pw), "/"), stdout = TRUE))
        cat("FILE_HITS", length(found), paste(found, collapse = " "), "\n")
        # a file R wrote itself is found, so the search can find things
        writeLines(paste0("x", pw), file.path(tempdir(), "canary"))
        canary <- suppressWarnings(system2("grep", c("-rlsF", "-e", shQuote(pw), tempdir()), stdout = TRUE))
        unlink(file.path(tempdir(), "canary"))
        cat("CANARY_FOUND", length(canary), "\n")
"#,
        points = points.join(", ")
    )
}

/// The first value of line `key` in `out`.
fn line_value(out: &str, key: &str) -> Result<String> {
    field(out, key)
        .first()
        .map(|v| (*v).to_owned())
        .with_context(|| format!("no {key} in {out}"))
}

/// Checks what [`password_search_r`] printed in `out`: `password` printed nowhere, no hit in
/// the environment, `/proc` or any file, and the planted copy found.
fn ensure_not_found(out: &str, password: &str) -> Result<()> {
    ensure!(!out.contains(password), "R printed the password: {out}");
    ensure!(
        line_value(out, "ENV_HITS")? == "0",
        "the environment holds the password"
    );
    let proc_files = line_value(out, "PROC_FILES")?;
    ensure!(
        proc_files.starts_with(|c: char| c != '0'),
        "no /proc entries read"
    );
    ensure!(
        proc_files.ends_with("PROC_HITS 0"),
        "a /proc file holds the password: {proc_files}"
    );
    let file_hits = line_value(out, "FILE_HITS")?;
    ensure!(file_hits == "0", "files hold the password: {file_hits}");
    ensure!(
        line_value(out, "CANARY_FOUND")? == "1",
        "the file search cannot find a planted copy"
    );
    Ok(())
}

/// The session's own Rserve password (the one its credentials Secret gives the MCP frontend) is
/// nowhere R can read: not in the environment, no file (a recursive grep of the whole
/// filesystem), no `/proc/<pid>/environ` or `cmdline`. Rserve's password file in the pod holds
/// only the password's SHA-1 (`rsession $<40 hex digits>`, from the pod's annotation), which
/// R can read and which does not log in.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh)"]
async fn rserve_password_is_nowhere_r_can_read() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-rservepw").await?;
    let name = "e2e-escape-rservepw";
    let rs = adopted_session(&client, &agent, name, json!({})).await?;
    let login = rserve_login(&client, &agent.ns, &rs).await?;
    let password = login
        .password
        .clone()
        .context("no password in the credentials Secret")?;
    ensure!(
        password.len() >= 16,
        "the password is too short to search for"
    );
    let code = format!(
        "{}cat(\"PWDFILE\", readLines(\"/etc/rserve/credentials/rserve.pwd\"), \"\\n\")",
        password_search_r(&password)
    );
    let r = agent.exec_for(name, &code, 120).await?;
    let out = ok_stdout(&r, &code)?;
    println!("{out}");
    ensure_not_found(&out, &password)?;
    let pwdfile = line_value(&out, "PWDFILE")?;
    let hash = pwdfile
        .strip_prefix("rsession $")
        .with_context(|| format!("the password file is not a stored hash: {pwdfile}"))?;
    ensure!(
        hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "the password file is not a SHA-1: {pwdfile}"
    );
    // The hash read from inside R does not log in (nor, as a control, does a wrong password;
    // the right one does).
    let addr = reachable_endpoint(&client, &agent.ns, &rs).await?;
    let with = |pw: &str| rserve::ConnectOptions {
        password: Some(pw.into()),
        ..login.clone()
    };
    for wrong in [hash, "not-the-password"] {
        let refused = rserve::Connection::connect(&addr, &with(wrong)).await;
        ensure!(
            matches!(refused, Err(rserve::Error::Auth(_))),
            "logging in with {wrong:?}: {:?}",
            refused.map(drop)
        );
    }
    rserve::Connection::connect(&addr, &login)
        .await
        .context("the Secret's password logs in")?
        .close()
        .await;
    agent.finish().await
}

/// The database password stays in the pod's credential proxy: R, trying as an attacker would,
/// finds it in no environment variable, no file it can read (a recursive grep of the whole
/// filesystem), no `/proc/<pid>/environ` or `cmdline` it can see, and not in what the proxy's
/// port answers; connecting to the real server without the proxy fails authentication; a write
/// through the proxy is refused (`readOnly` defaults to true), while reads work.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed and e2e/local/omop-postgres.sh"]
async fn database_password_is_nowhere_r_can_read() -> Result<()> {
    let name = "e2e-escape-dbpw";
    let agent = omop_session(name).await?;
    let password = env("RSESSION_E2E_PG_PASSWORD")?;
    ensure!(
        password.len() >= 8,
        "the e2e password is too short to search for"
    );
    let code = format!(
        r#"{search}
        cat("PGPASSWORD_SET", nzchar(Sys.getenv("PGPASSWORD")), "\n")
        cat("PGHOST", Sys.getenv("PGHOST"), "\n")
        # what the proxy's port says to a stranger
        s <- socketConnection("127.0.0.1", 6432, open = "r+b", blocking = TRUE, timeout = 3)
        writeBin(charToRaw("GET / HTTP/1.0\r\n\r\n"), s)
        banner <- tryCatch(readBin(s, "raw", 4096), error = function(e) raw(0))
        close(s)
        cat("BANNER_BYTES", length(banner), "BANNER_HITS", grepl(pw, rawToChar(banner[banner != as.raw(0)]), fixed = TRUE), "\n")
        # the real server, around the proxy, as the same user
        direct <- tryCatch({{
          con <- DBI::dbConnect(RPostgreSQL::PostgreSQL(), host = "{host}", port = {port},
            dbname = Sys.getenv("PGDATABASE"), user = Sys.getenv("PGUSER"))
          DBI::dbDisconnect(con); "connected"
        }}, error = function(e) conditionMessage(e))
        cat("DIRECT", gsub("\\s+", " ", direct), "\n")
        con <- DBI::dbConnect(RPostgreSQL::PostgreSQL(), host = Sys.getenv("PGHOST"),
          port = as.integer(Sys.getenv("PGPORT")), dbname = Sys.getenv("PGDATABASE"), user = Sys.getenv("PGUSER"))
        cat("READ_ONLY", DBI::dbGetQuery(con, "SHOW default_transaction_read_only")[[1]], "\n")
        write <- tryCatch({{ DBI::dbExecute(con, paste0("INSERT INTO ", Sys.getenv("CDM_SCHEMA"),
          ".concept VALUES (1, 'x', 'x', 'x', 'x', NULL, 'x')")); "written" }},
          error = function(e) conditionMessage(e))
        cat("WRITE", gsub("\\s+", " ", write), "\n")
        cat("PERSONS", DBI::dbGetQuery(con, paste0("SELECT count(*) FROM ", Sys.getenv("CDM_SCHEMA"), ".person"))[[1]], "\n")
        DBI::dbDisconnect(con)"#,
        search = password_search_r(&password),
        host = env("RSESSION_E2E_PG_HOST")?,
        port = env("RSESSION_E2E_PG_PORT")?,
    );
    let r = agent.exec_for(name, &code, 240).await?;
    let out = ok_stdout(&r, &code)?;
    println!("{out}");
    ensure_not_found(&out, &password)?;
    let one = |key: &str| line_value(&out, key);
    ensure!(one("PGPASSWORD_SET")? == "FALSE", "PGPASSWORD is set in R");
    ensure!(one("PGHOST")? == "127.0.0.1", "PGHOST is not the proxy");
    ensure!(
        one("BANNER_BYTES")?.ends_with("BANNER_HITS FALSE"),
        "the proxy's answer holds the password"
    );
    let direct = one("DIRECT")?;
    ensure!(
        direct.contains("password") && direct != "connected",
        "a direct connection without the proxy: {direct}"
    );
    ensure!(
        one("READ_ONLY")? == "on",
        "default_transaction_read_only is not on"
    );
    let write = one("WRITE")?;
    ensure!(
        write.contains("read-only transaction"),
        "an INSERT through the proxy: {write}"
    );
    let persons: i64 = one("PERSONS")?.parse()?;
    ensure!(persons > 0, "no persons read through the proxy");
    agent.finish().await
}

/// Positive control: `spec.network.egress` opens exactly the allow-listed address and port (a
/// listener of this test on the node address); a session without the rule is refused there.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed and NetworkPolicy enforced"]
async fn egress_rule_opens_only_the_allow_listed_target() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-egress").await?;
    let node = node_ip(&client).await?;
    let listener = Listener::start(&node).await?;
    let port = listener.addr.port();
    let name = "e2e-escape-egress";
    adopted_session(
        &client,
        &agent,
        name,
        json!({"network": {"egress": [{"cidr": format!("{node}/32"), "ports": [port]}]}}),
    )
    .await?;
    let plain = agent.create_session().await?;

    let allowed = agent.eval(name, &r_read_greeting(&node, port)).await?;
    println!("with the rule: {allowed}");
    ensure!(
        allowed.trim() == format!("GOT {GREETING}"),
        "the allow-listed listener was not reached: {allowed}"
    );
    let after_allowed = listener.accepted();
    let denied = agent.eval(&plain, &r_read_greeting(&node, port)).await?;
    println!("without the rule: {denied}");
    ensure!(
        denied.trim_start().starts_with("BLOCKED"),
        "a session without the rule reached the listener: {denied}"
    );
    ensure!(
        listener.accepted() == after_allowed,
        "the listener accepted a connection from the session without the rule"
    );
    // The rule is for that port only.
    let other = probe_from_session(
        &agent,
        name,
        &[Target::new("kube-apiserver (node address)", &node, 6443)],
    )
    .await?;
    ensure!(
        !other[0].open,
        "the rule opened more than its port: {other:?}"
    );
    agent.finish().await
}

/// A fork bomb hits the pod's PID limit: the node stays Ready, another session answers, and
/// closing the session removes its pod.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh); runs on the node"]
async fn fork_bomb_is_stopped_by_the_pid_limit() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-forkbomb").await?;
    let bystander = agent.create_session().await?;
    let name = "e2e-escape-forkbomb";
    // Half a CPU at most, so the bomb cannot starve the node's two cores.
    let rs = adopted_session(
        &client,
        &agent,
        name,
        json!({"resources": {"requests": {"cpu": "50m"}, "limits": {"cpu": "500m"}}}),
    )
    .await?;
    let pod = session_pod(&client, &agent.ns, &rs).await?;
    let pod_name = kube::ResourceExt::name_any(&pod);
    let uid = pod.metadata.uid.clone().context("pod uid")?;
    let cg =
        pod_cgroup_dir("pids", &uid).with_context(|| format!("no pids cgroup of pod {uid}"))?;
    let pod_max: u64 = cgroup_file(&cg, "pids.max")?
        .parse()
        .with_context(|| format!("pod pids.max of {} is not a number", cg.display()))?;
    ensure!(
        pod_max <= 1024,
        "pod pids.max {pod_max} (podPidsLimit 512 expected)"
    );
    let (node, _) = the_node(&client).await?;

    let started = jiff::Timestamp::now();
    agent
        .eval(
            name,
            "system(\"bash -c ':(){ :|:& };:' >/dev/null 2>&1 &\"); cat('started')",
        )
        .await?;
    let events = poll_until(
        "the pod's PID limit to be hit",
        120,
        std::time::Duration::from_millis(500),
        || {
            let cg = cg.clone();
            async move {
                let events = cgroup_file(&cg, "pids.events").unwrap_or_default();
                let current: u64 = cgroup_file(&cg, "pids.current")?.parse()?;
                let refused: u64 = events
                    .lines()
                    .find_map(|l| l.strip_prefix("max "))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                Ok((refused > 0 || current >= pod_max).then_some((current, refused)))
            }
        },
    )
    .await?;
    println!(
        "pod cgroup {}: pids.max {pod_max}, pids.current {}, forks refused {}",
        cg.display(),
        events.0,
        events.1
    );

    // R reads its own cgroup without forking (the bomb holds every PID there is).
    let r = agent
        .exec_for(
            name,
            "cat('CURRENT', readLines('/sys/fs/cgroup/pids/pids.current'), '\\n')
             cat('MAX', readLines('/sys/fs/cgroup/pids/pids.max'), '\\n')",
            120,
        )
        .await?;
    let out = ok_stdout(&r, "read pids")?;
    println!("inside the container: {out}");
    let current: u64 = field(&out, "CURRENT")
        .first()
        .context("pids.current")?
        .parse()?;
    let max = field(&out, "MAX").first().context("pids.max")?.to_string();
    let effective = if max == "max" { pod_max } else { max.parse()? };
    ensure!(
        effective <= pod_max,
        "container pids.max {max} above the pod's {pod_max}"
    );
    ensure!(
        current <= effective,
        "pids.current {current} above pids.max {effective}"
    );
    let pod_current: u64 = cgroup_file(&cg, "pids.current")?.parse()?;
    ensure!(
        pod_current <= pod_max,
        "pod pids.current {pod_current} > {pod_max}"
    );

    wait_lease_renewed(&client, &node, started, 90).await?;
    let (_, ready) = the_node(&client).await?;
    ensure!(ready, "node {node} is not Ready under the fork bomb");
    ensure!(
        agent.eval(&bystander, "cat(6 * 7)").await? == "42",
        "the other session does not answer"
    );

    agent.close_session(name).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &agent.ns);
    wait_deleted(&pods, &pod_name, 180).await?;
    agent.finish().await
}

/// Allocating past the memory limit ends R with `session_lost` naming the OOM kill; the
/// next call runs in a fresh R with the workspace intact.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh)"]
async fn memory_over_the_limit_is_an_oom_kill_and_the_session_recovers() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-oom").await?;
    let name = "e2e-escape-oom";
    adopted_session(
        &client,
        &agent,
        name,
        json!({"resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}}}),
    )
    .await?;
    agent
        .eval(name, "writeLines('before the OOM', 'oom-note.txt')")
        .await?;
    // 800 MB of doubles, every page written.
    let r = agent
        .exec_for(name, "x <- numeric(1e8); x[] <- 1; cat(sum(x))", 120)
        .await?;
    let failure =
        tool_failure(&r).with_context(|| format!("the allocation succeeded: {}", text(&r)))?;
    println!("over the limit: {failure}");
    ensure!(
        failure.code == "session_lost",
        "expected session_lost, got {failure}"
    );
    ensure!(
        failure.details["reason"] == "oom_killed" || text(&r).contains("oom_killed"),
        "the failure does not name the OOM kill: {failure}"
    );
    let (r, _) = agent
        .eval_until_ok(name, "cat(readLines('oom-note.txt'), 6 * 7)", 120)
        .await?;
    ensure!(
        stdout(&r) == "before the OOM 42",
        "after the OOM: {}",
        text(&r)
    );
    ensure!(
        structured_field(&r, "state_reset") == Some(json!(true)),
        "the next result does not say R state was reset: {}",
        text(&r)
    );
    agent.finish().await
}

/// A background process started from R does not outlive the session.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh); runs on the node"]
async fn background_process_does_not_outlive_the_session() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-bg").await?;
    let id = agent.create_session().await?;
    let rs = get_rsession(&client, &agent.ns, &id).await?;
    let pod = session_pod(&client, &agent.ns, &rs).await?;
    let pod_name = kube::ResourceExt::name_any(&pod);
    let uid = pod.metadata.uid.clone().context("pod uid")?;
    // `sleep 600.<pid>`: unique on this machine, still a 600-second sleep.
    let marker = format!("sleep 600.{}", std::process::id());
    agent
        .eval(
            &id,
            &format!("system('{marker} >/dev/null 2>&1 &'); cat('started')"),
        )
        .await?;
    let found = poll_until(
        "the background sleep on the node",
        30,
        std::time::Duration::from_millis(200),
        || {
            let marker = marker.clone();
            async move {
                let sleeps: Vec<Process> = processes_matching(&marker)
                    .into_iter()
                    .filter(|p| p.argv[0].ends_with("sleep"))
                    .collect();
                Ok(Some(sleeps).filter(|p| !p.is_empty()))
            }
        },
    )
    .await?;
    ensure!(
        found.iter().all(|p| in_pod(p.pid, &uid)),
        "the sleep runs outside the session pod's cgroups: {found:?}"
    );
    println!("background process before close: {found:?}");

    agent.close_session(&id).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &agent.ns);
    wait_deleted(&pods, &pod_name, 180).await?;
    poll_until(
        "the background sleep to be gone",
        60,
        std::time::Duration::from_millis(250),
        || {
            let marker = marker.clone();
            async move { Ok(processes_matching(&marker).is_empty().then_some(())) }
        },
    )
    .await?;
    agent.finish().await
}

/// /tmp is a size-limited tmpfs: writing past it fails inside R ("No space left on device"),
/// the session keeps answering, and workspace files are untouched.
#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh)"]
async fn filling_tmp_fails_with_no_space_and_the_session_survives() -> Result<()> {
    let client = client().await?;
    let agent = Agent::new(&client, "e2e-escape-tmp").await?;
    let id = agent.create_session().await?;
    agent.eval(&id, "writeLines('kept', 'keep.txt')").await?;
    let out = agent
        .exec_for(
            &id,
            "m <- strsplit(readLines('/proc/self/mounts'), ' ')
             tmp <- Filter(function(f) f[2] == '/tmp', m)
             cat('MOUNT', vapply(tmp, function(f) paste(f[3], f[4]), ''), '\\n')
             chunk <- raw(32 * 1024^2)
             con <- file('/tmp/e2e-fill.bin', 'wb')
             res <- tryCatch({ for (i in 1:128) writeBin(chunk, con); 'no error' },
                             warning = function(w) conditionMessage(w), error = function(e) conditionMessage(e))
             try(close(con), silent = TRUE)
             cat('R_WRITE', res, '\\n')
             cat('R_SIZE', file.size('/tmp/e2e-fill.bin'), '\\n')
             unlink('/tmp/e2e-fill.bin')
             dd <- suppressWarnings(system2('dd', c('if=/dev/zero', 'of=/tmp/e2e-dd.bin', 'bs=1M', 'count=4096'),
                                            stdout = TRUE, stderr = TRUE))
             cat(paste0('DD ', dd, '\\n'), sep = '')
             unlink('/tmp/e2e-dd.bin')",
            180,
        )
        .await
        .and_then(|r| ok_stdout(&r, "fill /tmp"))?;
    println!("{out}");
    let mount = field(&out, "MOUNT").join(" ");
    ensure!(
        mount.starts_with("tmpfs") && mount.contains("size="),
        "/tmp is not a size-limited tmpfs: {mount}"
    );
    let r_write = field(&out, "R_WRITE").join(" ");
    ensure!(
        r_write != "no error"
            && [
                "No space left",
                "problem writing",
                "write error",
                "cannot write"
            ]
            .iter()
            .any(|m| r_write.contains(m)),
        "writing 4 GiB to /tmp from R: {r_write}"
    );
    let dd = field(&out, "DD").join(" ");
    ensure!(
        dd.contains("No space left on device"),
        "dd past the limit: {dd}"
    );
    let after = agent.eval(&id, "cat(readLines('keep.txt'), 6 * 7)").await?;
    ensure!(after == "kept 42", "after filling /tmp: {after}");
    agent.finish().await
}
