//! `zumik replay`: audit a journal (verify, explain, time-travel, export) and what-if replays.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::config::Config;
use crate::core::audit::{command_ts, Auditor};
use crate::core::router::JournalEntry;
use crate::core::whatif::{compare, WhatIf};
use crate::core::{Router, RoutingConfig};
use crate::events::codec::decode_input;
use crate::events::{InputEvent, LaneActivatedV1, Timestamp};
use crate::journal::{Format, Header, JournalReader, JournalWriter};

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Journal file to audit (JSONL or bincode, as written by `zumik decide --journal` or
    /// `zumik replay --export`).
    #[arg(long, short = 'j', conflicts_with_all = ["events", "from_kafka"])]
    pub journal: Option<PathBuf>,
    /// Read the journal from the Kafka journal topic of the config's `[kafka]` section (all of
    /// it, committed records only) instead of a file; with --export, write it to a file.
    #[arg(long)]
    pub from_kafka: bool,
    /// With --from-kafka: only this unit's journal (journal partition). Each input partition's
    /// unit journals on its own and is audited on its own; without this, every unit in turn.
    #[arg(long, requires = "from_kafka")]
    pub partition: Option<i32>,
    /// Input events (JSONL) for a what-if replay without a journal; needs --policy.
    #[arg(long, short = 'e', requires = "policy")]
    pub events: Option<PathBuf>,
    /// Print the decision for this request, the clusters considered and the state it came from.
    #[arg(long)]
    pub explain: Option<String>,
    /// Time travel: print the state of --lane as of this event time (RFC 3339).
    #[arg(long, requires = "lane")]
    pub at: Option<String>,
    /// Only this lane's records (its creation and commands): one lane's journal re-folds on its
    /// own. Also the lane for --at. Applies to audits and to --export.
    #[arg(long)]
    pub lane: Option<String>,
    /// End of the range: the journal up to the first lane command after this event time
    /// (RFC 3339). A range always starts at the journal's beginning, because a re-fold needs
    /// each actor's records from its creation. Applies to audits and to --export.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Write the journal's records to this file (format from --format or the extension).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Encoding for --export: jsonl or bincode (default: by extension, `.bin` = bincode).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// What-if: replay the same inputs under this config (a zumik.toml) and report the changes.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// What-if: treat this lane as activated from the start (repeatable).
    #[arg(long, requires = "policy")]
    pub activate: Vec<String>,
    /// What-if: treat this lane as never activated (repeatable).
    #[arg(long, requires = "policy")]
    pub deactivate: Vec<String>,
    /// Baseline config for --events (the journal's own config is used with --journal).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn open_journal(path: &PathBuf) -> anyhow::Result<JournalReader<BufReader<File>>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    JournalReader::new(BufReader::with_capacity(1 << 20, f))
        .with_context(|| format!("reading {}", path.display()))
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    if let Some(policy) = &args.policy {
        return what_if(&args, policy);
    }
    // Both sources yield the same records, each with the unit (journal partition) it belongs
    // to — a file holds one; `source` names where they came from.
    type Entries = Box<dyn Iterator<Item = anyhow::Result<(i32, JournalEntry)>>>;
    // Input records a file reader stepped over without decoding (they count as replayed).
    let skipped_inputs = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let (source, routing, entries): (String, RoutingConfig, Entries) = if args.from_kafka {
        let config = Config::load(args.config.config.as_deref())?;
        let topics = crate::kafka::Topics::new(&config.kafka.topic_prefix);
        let mut units = crate::kafka::read_journal_units(&config.kafka, &topics)?;
        if let Some(p) = args.partition {
            units.retain(|(u, _)| *u == p);
        }
        eprintln!(
            "read {} journal records of {} unit(s) from {}",
            units.iter().map(|(_, r)| r.len()).sum::<usize>(),
            units.len(),
            topics.journal
        );
        if units.len() > 1 && (args.export.is_some() || args.at.is_some()) {
            bail!(
                "{} holds the journals of {} units (input partitions): give --partition with \
                 --export or --at",
                topics.journal,
                units.len()
            );
        }
        let entries = Box::new(
            units
                .into_iter()
                .flat_map(|(u, records)| records.into_iter().map(move |r| Ok((u, r.entry)))),
        );
        (
            format!("kafka topic {}", topics.journal),
            config.routing,
            entries,
        )
    } else {
        let Some(path) = &args.journal else {
            bail!("give --journal FILE or --from-kafka (or --events FILE with --policy)")
        };
        let mut reader = open_journal(path)?;
        let routing = reader.header.routing.clone();
        // An audit re-folds the actors' records: inputs need not be decoded (an export does).
        if args.export.is_none() {
            reader = reader.skipping_inputs();
        }
        let counter = skipped_inputs.clone();
        let entries = std::iter::from_fn(move || {
            let next = reader.next();
            counter.set(reader.skipped_inputs());
            next
        });
        (
            path.display().to_string(),
            routing,
            Box::new(entries.map(|e| e.map(|e| (0, e)).map_err(anyhow::Error::from))),
        )
    };
    let until = args
        .until
        .as_deref()
        .map(Timestamp::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--until: {e}"))?;
    let entries: Entries = if until.is_some() || args.lane.is_some() {
        let lane = args.lane.clone();
        Box::new(
            entries
                .take_while(move |e| match (until, e) {
                    (Some(u), Ok((_, JournalEntry::Lane { command, .. }))) => {
                        command_ts(command).is_none_or(|t| t <= u)
                    }
                    _ => true,
                })
                .filter(move |e| match (&lane, e) {
                    (Some(want), Ok((_, JournalEntry::Lane { lane, .. })))
                    | (Some(want), Ok((_, JournalEntry::LaneCreated { lane, .. }))) => {
                        **lane == **want
                    }
                    (Some(_), Ok(_)) => false,
                    _ => true,
                }),
        )
    } else {
        entries
    };
    if let Some(out) = &args.export {
        return export(
            &source,
            routing,
            entries.map(|e| e.map(|(_, e)| e)),
            out,
            args.format,
        );
    }
    let cfg = Arc::new(routing);
    cfg.validate().context("the journal's routing config")?;
    let mut auditor = Auditor::new(cfg);
    if let Some(id) = &args.explain {
        auditor = auditor.explain(id);
    }
    let at = args
        .at
        .as_deref()
        .map(Timestamp::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--at: {e}"))?;
    let started = Instant::now();
    let mut unit = None;
    for entry in entries {
        let (u, entry) = entry?;
        // Each unit's journal re-folds on its own: its own copy of every actor.
        if unit.replace(u).is_some_and(|before| before != u) {
            auditor.next_unit();
        }
        if let (
            Some(at),
            Some(lane),
            JournalEntry::Lane {
                lane: l, command, ..
            },
        ) = (at, &args.lane, &entry)
        {
            if **l == **lane && command_ts(command).is_some_and(|t| t > at) {
                break;
            }
        }
        auditor.apply(&entry);
    }
    let elapsed = started.elapsed();
    let mut out = io::stdout().lock();
    if let (Some(_), Some(lane)) = (&args.at, &args.lane) {
        let state = auditor
            .lanes
            .get(lane.as_str())
            .with_context(|| format!("lane {lane} is not in the journal"))?;
        serde_json::to_writer_pretty(&mut out, state)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(id) = &args.explain {
        let e = auditor
            .explanation
            .as_ref()
            .with_context(|| format!("no decision for request {id} in the journal"))?;
        if args.json {
            serde_json::to_writer_pretty(&mut out, e)?;
            writeln!(out)?;
        } else {
            print_explanation(&mut out, e)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = auditor.stats;
    // Inputs stepped over count as replayed records, except when only one lane is audited.
    if args.lane.is_none() {
        s.records += skipped_inputs.get();
    }
    if args.json {
        let v = serde_json::json!({ "stats": s, "mismatches": auditor.mismatches, "seconds": elapsed.as_secs_f64() });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        for m in &auditor.mismatches {
            writeln!(out, "MISMATCH at record {} ({}):", m.index, m.actor)?;
            writeln!(out, "  command:    {}", m.command)?;
            writeln!(out, "  recorded:   {}", m.recorded)?;
            writeln!(out, "  recomputed: {}", m.recomputed)?;
        }
        let secs = elapsed.as_secs_f64().max(1e-9);
        writeln!(
            out,
            "replayed {} records ({} commands, {} events, {} decisions) in {:.3} s ({:.0} records/s, {:.0} events/s): {} mismatches",
            s.records,
            s.commands,
            s.events,
            s.decisions,
            elapsed.as_secs_f64(),
            s.records as f64 / secs,
            s.events as f64 / secs,
            s.mismatches
        )?;
    }
    Ok(if s.mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_explanation(out: &mut impl Write, e: &crate::core::audit::Explanation) -> io::Result<()> {
    let d = &e.decision;
    writeln!(
        out,
        "request   {} (tenant {}, lane {}, seq {})",
        d.request_id, d.tenant_id, d.lane, d.seq
    )?;
    writeln!(out, "decided   {} at {}", j(&d.mode), d.decided_at)?;
    writeln!(
        out,
        "profile   {}",
        d.profile.map_or("none".into(), |p| j(&p))
    )?;
    writeln!(out, "target    {}", d.target.as_deref().unwrap_or("none"))?;
    writeln!(out, "reason    {}", d.reason.as_str())?;
    writeln!(
        out,
        "cost      {} micros (estimate)",
        d.estimated_cost_micros
    )?;
    if let Some(detail) = &d.detail {
        writeln!(out, "detail    {detail}")?;
    }
    let lane = &e.lane_before;
    writeln!(
        out,
        "lane      {} (provider {}{}), report {}",
        if lane.active { "active" } else { "not active" },
        lane.provider,
        if lane.provider_down { " DOWN" } else { "" },
        lane.report_digest.as_deref().unwrap_or("none")
    )?;
    writeln!(
        out,
        "tenant    policy v{}{}{}",
        e.tenant.version,
        if e.tenant.known { "" } else { " (default)" },
        if e.tenant.paused { ", paused" } else { "" }
    )?;
    writeln!(out, "considered:")?;
    if d.considered.is_empty() {
        writeln!(out, "  (no candidates)")?;
    }
    for c in &d.considered {
        let detail = lane.clusters.get(&c.target).map(|lc| {
            let hb = lc.view.last_heartbeat.map_or("never".to_owned(), |t| {
                format!("{} ms before", d.decided_at.millis() - t)
            });
            format!(
                "  region {}, {:?}, reserved {}/{} (lane share), heartbeat {}{}",
                lc.view.region,
                lc.view.health,
                lc.reserved,
                lc.view.lane_limit,
                hb,
                lc.view
                    .dedicated_to
                    .as_ref()
                    .map_or(String::new(), |t| format!(", dedicated to {t}"))
            )
        });
        writeln!(
            out,
            "  {:<40} {}{}",
            c.target,
            j(&c.verdict),
            detail.unwrap_or_default()
        )?;
    }
    for ev in &e.other_events {
        writeln!(
            out,
            "also      {}",
            serde_json::to_string(ev).unwrap_or_default()
        )?;
    }
    Ok(())
}

/// A serde enum's wire name (`byoc_dynamo`, `saturated`, …).
fn j<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => String::new(),
    }
}

/// Writes journal records to a file (format from `--format` or the extension).
fn export(
    source: &str,
    routing: RoutingConfig,
    entries: impl Iterator<Item = anyhow::Result<JournalEntry>>,
    out: &PathBuf,
    format: Option<Format>,
) -> anyhow::Result<ExitCode> {
    let format = format.unwrap_or_else(|| Format::from_path(out));
    let header = Header::new(format!("export of {source}"), routing);
    let f = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = JournalWriter::new(BufWriter::with_capacity(1 << 20, f), format, &header)?;
    for entry in entries {
        w.write(&entry?)?;
    }
    let n = w.written;
    w.finish()?;
    eprintln!("exported {n} records to {} ({format:?})", out.display());
    Ok(ExitCode::SUCCESS)
}

fn what_if(args: &ReplayArgs, policy: &std::path::Path) -> anyhow::Result<ExitCode> {
    let candidate_cfg = Config::load(Some(policy))?;
    let prices = Arc::new(candidate_cfg.price_table()?);
    let (baseline_routing, inputs): (RoutingConfig, Vec<InputEvent>) =
        if let Some(path) = &args.journal {
            let reader = open_journal(path)?;
            let routing = reader.header.routing.clone();
            let mut inputs = Vec::new();
            for entry in reader {
                if let JournalEntry::Input(e) = entry? {
                    inputs.push(e);
                }
            }
            (routing, inputs)
        } else {
            let path = args.events.as_ref().context("give --journal or --events")?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let inputs = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .filter_map(|(i, l)| match decode_input(l.as_bytes()) {
                    Ok(e) => Some(e),
                    Err(err) => {
                        eprintln!("line {}: skipped: {err}", i + 1);
                        None
                    }
                })
                .collect();
            (Config::load(args.config.config.as_deref())?.routing, inputs)
        };
    let first_ts = inputs.first().map(InputEvent::ts).unwrap_or_default();
    let baseline = Router::new(Arc::new(baseline_routing), prices.clone());
    let candidate = Router::new(candidate_cfg.routing_arc(), prices);
    let (activate, deactivate) = (args.activate.clone(), args.deactivate.clone());
    let mut injected = false;
    let report: WhatIf = compare(inputs, baseline, candidate, |e| {
        let mut out = Vec::new();
        if !injected {
            injected = true;
            out.extend(activate.iter().map(|lane| {
                InputEvent::LaneActivated(LaneActivatedV1 {
                    lane: lane.clone(),
                    report_digest: "what-if".into(),
                    ts: first_ts,
                })
            }));
        }
        let keep = match &e {
            InputEvent::LaneActivated(a) => !deactivate.contains(&a.lane),
            InputEvent::LaneActivate(a) => !deactivate.contains(&a.lane),
            InputEvent::LaneDeactivated(d) => !activate.contains(&d.lane),
            _ => true,
        };
        if keep {
            out.push(e);
        }
        out
    });
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "what-if under {}: {} of {} decisions change",
            policy.display(),
            report.changed,
            report.decisions
        )?;
        for (t, n) in &report.transitions {
            writeln!(out, "  {n:>8}  {t}")?;
        }
        writeln!(
            out,
            "estimated cost: {:.6} $ -> {:.6} $ ({:+.6} $)",
            report.baseline_cost_micros as f64 / 1e6,
            report.candidate_cost_micros as f64 / 1e6,
            report.cost_delta_micros as f64 / 1e6
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
