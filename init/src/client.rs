//! keelctl: a thin client of PID 1's control socket ($KEEL_RUN/control.sock, default /run/keel/control.sock).
//!
//! ```text
//! keelctl [--json] list                      NAME KIND STATE PID RESTARTS UPTIME READY
//! keelctl [--json] status NAME               state, pid, last exit, reason, the last log lines
//! keelctl start|stop|restart NAME
//! keelctl logs NAME [-f]                     the unit's ring (NAME "keel": keel's own lines); -f follows
//! keelctl poweroff|reboot|halt
//! keelctl [--json] analyze [--svg FILE]      boot timeline: spawn, ready, duration per unit
//! ```
//!
//! Also reachable as `init keelctl ...` (multi-call binary). The socket path follows `KEEL_RUN` like PID 1.
//! A session on the serial console:
//!
//! ```text
//! # keelctl list
//! NAME      KIND     STATE    PID  RESTARTS  UPTIME  READY
//! net       onboot   exited   -    0         -       -
//! db        service  running  4    0         5m02s   yes
//! web       service  running  23   1         4m58s   yes
//! crasher   service  backoff  -    3         -       -
//! # keelctl status db
//! db (service): running
//!   pid        4
//!   ...
//! # keelctl restart web
//! restart web: requested
//! # keelctl logs web -f
//! [  12.034] keel: starting web (pid 23)
//! [  12.036] web up
//! ^C
//! # keelctl analyze --svg /tmp/boot.svg
//! wrote /tmp/boot.svg
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use crate::control::{self, Analyze, Request, Response, UnitInfo};
use crate::time;
use keel_sys::Errno;

const USAGE: &str = "usage: keelctl [--json] list | status NAME | start NAME | stop NAME | restart NAME | \
logs NAME [-f] | poweroff | reboot | halt | analyze [--svg FILE]";

/// Run keelctl with its arguments (without argv[0]). Returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let cli = match parse(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let path = control::run_dir().join("control.sock");
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keelctl: connect {}: {} (is keel running, are you root?)", path.display(), Errno::from_io(&e));
            return 1;
        }
    };
    let mut w = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("keelctl: dup the control socket: {}", Errno::from_io(&e));
            return 1;
        }
    };
    if let Err(e) = w.write_all(control::encode(&cli.req).as_bytes()) {
        eprintln!("keelctl: send to {}: {}", path.display(), Errno::from_io(&e));
        return 1;
    }
    read_answers(&cli, BufReader::new(stream))
}

/// A parsed keelctl command line.
struct Cli {
    req: Request,
    json: bool,
    follow: bool,
    svg: Option<String>,
}

/// Parse the arguments; Err is the exit code (usage printed).
fn parse(args: &[String]) -> Result<Cli, i32> {
    let json = args.iter().any(|a| a == "--json");
    let args: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--json").collect();
    let follow = args.iter().any(|a| *a == "-f" || *a == "--follow");
    let svg = args.iter().position(|a| *a == "--svg").map(|i| args.get(i + 1).copied());
    let mut pos: Vec<&str> = Vec::new();
    let mut skip = false;
    for a in &args {
        if std::mem::take(&mut skip) {
            continue;
        }
        if *a == "--svg" {
            skip = true;
        } else if !a.starts_with('-') {
            pos.push(*a);
        }
    }
    let name = || pos.get(1).map(|s| s.to_string());
    let req = match (pos.first().copied(), name()) {
        (Some("list"), _) => Request::List,
        (Some("status"), Some(name)) => Request::Status { name },
        (Some("start"), Some(name)) => Request::Start { name },
        (Some("stop"), Some(name)) => Request::Stop { name },
        (Some("restart"), Some(name)) => Request::Restart { name },
        (Some("logs"), Some(name)) => Request::Logs { name, follow },
        (Some("poweroff"), _) => Request::Poweroff,
        (Some("reboot"), _) => Request::Reboot,
        (Some("halt"), _) => Request::Halt,
        (Some("analyze"), _) => Request::Analyze,
        (Some("help"), _) | (None, _) => {
            println!("{USAGE}");
            return Err(if pos.is_empty() { 2 } else { 0 });
        }
        _ => {
            eprintln!("{USAGE}");
            return Err(2);
        }
    };
    let svg = match svg {
        Some(None) => {
            eprintln!("keelctl: --svg needs a FILE");
            return Err(2);
        }
        Some(Some(f)) => Some(f.to_string()),
        None => None,
    };
    Ok(Cli { req, json, follow, svg })
}

/// Read PID 1's answers (one JSON line each; several with --follow) and print them. Returns the exit code.
fn read_answers(cli: &Cli, mut reader: BufReader<UnixStream>) -> i32 {
    let mut code = 0;
    let mut first = true;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("keelctl: read: {}", Errno::from_io(&e));
                return 1;
            }
        }
        if cli.json {
            print!("{line}");
        } else {
            let resp: Response = match serde_json::from_str(&line) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("keelctl: bad response: {e}");
                    return 1;
                }
            };
            if !resp.ok {
                eprintln!("keelctl: {}", resp.error.unwrap_or_default());
                return 1;
            }
            print!("{}", render(cli, &resp, first, &mut code));
        }
        let _ = std::io::stdout().flush();
        first = false;
        if !cli.follow {
            break;
        }
    }
    code
}

/// One answer as text (`code` set to 1 if writing an --svg file fails).
fn render(cli: &Cli, resp: &Response, first: bool, code: &mut i32) -> String {
    match &cli.req {
        Request::List => render_list(&resp.units, first),
        Request::Status { .. } => render_status(resp),
        Request::Analyze => match (&resp.analyze, cli.svg.as_deref()) {
            (Some(a), Some(file)) => match std::fs::write(file, render_svg(a)) {
                Ok(()) => format!("wrote {file}\n"),
                Err(e) => {
                    eprintln!("keelctl: write {file}: {}", Errno::from_io(&e));
                    *code = 1;
                    String::new()
                }
            },
            (Some(a), None) => render_analyze(a),
            (None, _) => String::new(),
        },
        _ => {
            let mut s = String::new();
            if let Some(m) = &resp.message {
                s.push_str(m);
                s.push('\n');
            }
            for l in &resp.lines {
                s.push_str(l);
                s.push('\n');
            }
            s
        }
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The `list` table.
pub fn render_list(units: &[UnitInfo], header: bool) -> String {
    let mut rows: Vec<[String; 7]> = Vec::new();
    if header {
        rows.push(["NAME", "KIND", "STATE", "PID", "RESTARTS", "UPTIME", "READY"].map(String::from));
    }
    for u in units {
        rows.push([
            u.name.clone(),
            u.kind.clone(),
            u.state.clone(),
            opt(u.pid),
            u.restarts.to_string(),
            u.uptime_ms.map(time::human).unwrap_or_else(|| "-".into()),
            match u.ready {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "-".into(),
            },
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i == 6 {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `status NAME`.
pub fn render_status(resp: &Response) -> String {
    let mut s = String::new();
    for u in &resp.units {
        s.push_str(&format!("{} ({}): {}\n", u.name, u.kind, u.state));
        let mut kv = |k: &str, v: String| s.push_str(&format!("  {k:<10} {v}\n"));
        kv("pid", opt(u.pid));
        kv("uptime", u.uptime_ms.map(time::human).unwrap_or_else(|| "-".into()));
        kv("restarts", u.restarts.to_string());
        kv("restart", u.restart.clone());
        kv("ready", u.readiness.clone());
        if !u.after.is_empty() {
            kv("after", u.after.join(","));
        }
        if let Some(e) = &u.last_exit {
            kv("last exit", e.clone());
        }
        if let Some(r) = &u.reason {
            kv("reason", r.clone());
        }
        if let Some(st) = &u.status {
            kv("status", st.clone());
        }
        if !u.tasks_max_source.is_empty() {
            let max = u.tasks_max.map_or_else(|| "no limit".to_string(), |m| format!("max {m}"));
            let now = u.tasks.map(|t| format!("{t} now, ")).unwrap_or_default();
            kv("tasks", format!("{now}{max} ({})", u.tasks_max_source));
        }
        if u.oom_kills > 0 {
            let last = u.last_oom.clone().unwrap_or_default();
            kv("oom kills", format!("{} (last: {last})", u.oom_kills));
        }
    }
    if !resp.lines.is_empty() {
        s.push_str("  last lines:\n");
        for l in &resp.lines {
            s.push_str(&format!("    {l}\n"));
        }
    }
    s
}

fn ms(v: Option<u64>) -> String {
    v.map(|v| format!("{}.{:03}s", v / 1000, v % 1000)).unwrap_or_else(|| "-".into())
}

/// End of a unit's bar: ready for services, exit for steps.
fn bar_end(u: &UnitInfo) -> Option<u64> {
    match u.kind.as_str() {
        "service" => u.ready_ms.or(u.exited_ms),
        _ => u.exited_ms.or(u.ready_ms),
    }
}

/// `analyze` as text: times relative to PID 1's start.
pub fn render_analyze(a: &Analyze) -> String {
    let mut s = format!(
        "PID 1 started {} after kernel boot; boot complete after {}\n",
        ms(Some(a.start_boot_ms)),
        ms(a.complete_ms)
    );
    if a.spawns > 0 {
        s.push_str(&format!(
            "{} spawns, {} µs each on average in PID 1 (max {} µs)\n",
            a.spawns, a.spawn_avg_us, a.spawn_max_us
        ));
    }
    if a.wakeups > 0 {
        s.push_str(&format!(
            "PID 1's time: output {} ms, console {} ms, cleanups {} ms, keelctl {} ms, in {} wake-ups\n",
            a.time_log_ms, a.time_console_ms, a.time_cleanup_ms, a.time_control_ms, a.wakeups
        ));
    }
    let w = a.units.iter().map(|u| u.name.len()).max().unwrap_or(4).max(4);
    s.push_str(&format!("{:<w$}  {:<10}  {:>9}  {:>9}  {:>9}  STATE\n", "UNIT", "KIND", "SPAWN", "READY", "TOOK"));
    let mut units: Vec<&UnitInfo> = a.units.iter().collect();
    units.sort_by_key(|u| u.spawned_ms.unwrap_or(u64::MAX));
    for u in units {
        let took = match (u.spawned_ms, bar_end(u)) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            _ => None,
        };
        s.push_str(&format!(
            "{:<w$}  {:<10}  {:>9}  {:>9}  {:>9}  {}\n",
            u.name,
            u.kind,
            ms(u.spawned_ms),
            ms(u.ready_ms),
            took.map(|t| format!("{t}ms")).unwrap_or_else(|| "-".into()),
            u.state
        ));
    }
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `analyze --svg`: one bar per unit (spawn to ready, or to exit for steps), like systemd-analyze plot.
pub fn render_svg(a: &Analyze) -> String {
    let row = 22u64;
    let left = 170u64;
    let mut units: Vec<&UnitInfo> = a.units.iter().filter(|u| u.spawned_ms.is_some()).collect();
    units.sort_by_key(|u| u.spawned_ms.unwrap_or(0));
    let end = units.iter().filter_map(|u| bar_end(u).or(u.spawned_ms)).chain(a.complete_ms).max().unwrap_or(0).max(100);
    // Pixels per ms: aim for ~900 px of timeline.
    let scale = 900.0 / end as f64;
    let width = left + 960;
    let height = 60 + row * units.len() as u64 + 30;
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"14\">keel boot: PID 1 at {} after kernel start, \
         complete after {}</text>\n",
        ms(Some(a.start_boot_ms)),
        ms(a.complete_ms)
    );
    // Grid: a line every 100 ms (or every second when long).
    let step = if end > 5000 { 1000 } else { 100 };
    let mut t = 0;
    while t <= end {
        let x = left as f64 + t as f64 * scale;
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"40\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#ddd\"/>\n<text x=\"{x:.1}\" y=\"36\" \
             fill=\"#888\" font-size=\"10\">{}ms</text>\n",
            height - 20,
            t
        ));
        t += step;
    }
    for (i, u) in units.iter().enumerate() {
        let y = 48 + row * i as u64;
        let start = u.spawned_ms.unwrap_or(0);
        let stop = bar_end(u).unwrap_or(end).max(start);
        let x = left as f64 + start as f64 * scale;
        let w = ((stop - start) as f64 * scale).max(2.0);
        let color = match (u.kind.as_str(), u.state.as_str()) {
            (_, "failed") => "#e06060",
            ("onboot", _) => "#7aa6e0",
            ("onshutdown", _) => "#b08be0",
            _ => "#6cc070",
        };
        s.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{}</text>\n<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" \
             fill=\"{color}\"><title>{} {}: spawn {} ready {} exit {}</title></rect>\n<text x=\"{:.1}\" y=\"{}\" \
             font-size=\"10\">{}ms</text>\n",
            y + 12,
            xml_escape(&u.name),
            xml_escape(&u.kind),
            xml_escape(&u.name),
            ms(u.spawned_ms),
            ms(u.ready_ms),
            ms(u.exited_ms),
            x + w + 4.0,
            y + 12,
            stop - start
        ));
    }
    if let Some(c) = a.complete_ms {
        let x = left as f64 + c as f64 * scale;
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"40\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#c00\" stroke-dasharray=\"4\"/>\n",
            height - 20
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, kind: &str, state: &str, spawned: Option<u64>, ready: Option<u64>) -> UnitInfo {
        UnitInfo {
            name: name.into(),
            kind: kind.into(),
            state: state.into(),
            spawned_ms: spawned,
            ready_ms: ready,
            ..Default::default()
        }
    }

    #[test]
    fn list_table_aligns_columns() {
        let mut web = unit("web", "service", "running", Some(10), Some(12));
        web.pid = Some(42);
        web.uptime_ms = Some(65_000);
        web.ready = Some(true);
        web.restarts = 2;
        let dhcp = unit("dhcpcd-long", "onboot", "exited", Some(1), None);
        let t = render_list(&[web, dhcp], true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "NAME         KIND     STATE    PID  RESTARTS  UPTIME  READY");
        assert_eq!(lines[1], "web          service  running  42   2         1m05s   yes");
        assert_eq!(lines[2], "dhcpcd-long  onboot   exited   -    0         -       -");
    }

    /// An analysis started 812 ms after kernel boot, complete after 140 ms, with no spawn statistics.
    fn analyze(units: Vec<UnitInfo>) -> Analyze {
        Analyze {
            spawns: 0,
            spawn_avg_us: 0,
            spawn_max_us: 0,
            start_boot_ms: 812,
            complete_ms: Some(140),
            units,
            ..Default::default()
        }
    }

    #[test]
    fn analyze_text_is_sorted_by_spawn() -> Result<(), Box<dyn std::error::Error>> {
        let a = analyze(vec![
            unit("web", "service", "running", Some(100), Some(130)),
            unit("net", "onboot", "exited", Some(5), None),
        ]);
        let t = render_analyze(&a);
        assert!(t.starts_with("PID 1 started 0.812s after kernel boot; boot complete after 0.140s\n"));
        let net = t.find("\nnet").ok_or("no net line")?;
        let web = t.find("\nweb").ok_or("no web line")?;
        assert!(net < web);
        assert!(t.contains("30ms"));
        Ok(())
    }

    /// A minimal well-formedness check: tags balance, attributes are quoted, no raw '<' or '&' in text.
    fn well_formed(s: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('<') {
            let text = &rest[..i];
            if text.contains('>')
                || text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "").replace("&quot;", "").contains('&')
            {
                return Err(format!("bad text {text:?}"));
            }
            let j = rest[i..].find('>').ok_or("unclosed tag")? + i;
            let tag = &rest[i + 1..j];
            rest = &rest[j + 1..];
            if tag.starts_with('?') {
                continue;
            }
            if !tag.matches('"').count().is_multiple_of(2) {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("close without open: {name}"))?;
                if open != name {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
            }
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed: {stack:?}"))
        }
    }

    #[test]
    fn svg_is_well_formed_with_one_bar_per_started_unit() -> Result<(), Box<dyn std::error::Error>> {
        let a = analyze(vec![
            unit("web<&>", "service", "running", Some(100), Some(130)),
            unit("net", "onboot", "exited", Some(5), None),
            unit("never", "service", "failed", None, None),
        ]);
        let s = render_svg(&a);
        well_formed(&s)?;
        assert!(s.starts_with("<?xml"));
        assert_eq!(s.matches("<rect x=").count(), 2);
        assert!(s.contains("web&lt;&amp;&gt;"));
        assert!(well_formed("<svg><g></svg>").is_err());
        Ok(())
    }
}
