//! Decoding of the public input topics' JSON (`zumik::events::codec::decode_input`): what the
//! broker pays per input before any decision, on the full mix of a workload (requests,
//! completions, heartbeats).
//!
//! Groups (throughput in inputs per second):
//! - `codec/decode_input` — the broker's decoder (one pass when `schema` comes first, as every
//!   serializer of the enum writes it), with validation;
//! - `codec/decode_tagged` — serde's internally tagged enum alone, no validation: the path the
//!   decoder falls back to when `schema` is not first;
//! - `codec/encode_decision` — a decision to its JSON, as the broker writes it.
//!
//! Run: `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zumik::core::{Output, PriceTable, Router, RoutingConfig};
use zumik::events::codec::{decode_input, encode_decision_into, encode_input};
use zumik::events::{DecisionV1, InputEvent};
use zumik::workload::{Workload, WorkloadSpec};

/// The encoded inputs of a workload's first 10 000 requests and their traffic, and the
/// decisions the router gives them.
fn corpus() -> (Vec<Vec<u8>>, Vec<DecisionV1>) {
    let w = Workload::new(WorkloadSpec {
        requests: 10_000,
        ..WorkloadSpec::default()
    })
    .expect("bench workload spec is valid");
    let mut router = Router::new(
        Arc::new(RoutingConfig::default()),
        Arc::new(PriceTable::embedded()),
    );
    let mut out = Output::default();
    let mut inputs = Vec::new();
    for e in w.setup_events().into_iter().chain(w.events()) {
        inputs.push(encode_input(&e));
        router.apply(e, &mut out);
    }
    (inputs, out.decisions)
}

fn codec(c: &mut Criterion) {
    let (inputs, decisions) = corpus();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(inputs.len() as u64));
    g.bench_function("decode_input", |b| {
        b.iter(|| {
            for bytes in &inputs {
                black_box(decode_input(bytes).expect("valid"));
            }
        })
    });
    g.bench_function("decode_tagged", |b| {
        b.iter(|| {
            for bytes in &inputs {
                black_box(serde_json::from_slice::<InputEvent>(bytes).expect("valid"));
            }
        })
    });
    g.throughput(Throughput::Elements(decisions.len() as u64));
    g.bench_function("encode_decision", |b| {
        let mut buf = Vec::with_capacity(1024);
        b.iter(|| {
            for d in &decisions {
                buf.clear();
                encode_decision_into(d, &mut buf);
                black_box(&buf);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
