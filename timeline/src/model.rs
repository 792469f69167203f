//! The plain data every sink and the TUI consume: one [`Timeline`] per
//! packet, made of [`Hop`]s, and a [`Summary`] for the whole trace. This is
//! also the JSON Lines schema (`{"type":"timeline",...}` and
//! `{"type":"summary",...}`), so changes here are schema changes.

use serde::{Deserialize, Serialize};

/// One place a packet was seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The kernel function, tracepoint (`net:netif_rx`) or uprobe symbol that fired.
    pub probe: String,
    /// fentry | kprobe | tracepoint | uprobe
    pub method: String,
    /// Device name, empty when the skb had no device yet.
    pub dev: String,
    pub ifindex: u32,
    /// Network namespace inode number.
    pub netns: u32,
    pub cpu: u32,
    pub pid: u32,
    pub comm: String,
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub ts_ns: u64,
    /// Since the previous hop of this packet; 0 for the first.
    pub delta_ns: u64,
    /// skb->len at this hop.
    pub len: u32,
    /// Set on the hop where the kernel dropped the packet (kfree_skb).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
    /// Packet bytes captured at this hop (from the Ethernet header when
    /// `l2`), hex-encoded in JSON; empty when not captured.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hex_bytes")]
    pub data: Vec<u8>,
    /// `data` starts at the Ethernet header (else at the IP header).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub l2: bool,
    /// Uprobe hops: how many packets the call handled at once (sendmmsg's
    /// vlen, recvmmsg's count, a VPP frame's n_vectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    /// The hop was placed in this timeline by time and process: its probe
    /// saw a batch, not this packet's bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_time: bool,
}

/// One packet's path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub id: u64,
    /// e.g. `ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1`
    pub summary: String,
    /// `0x` + 16 hex digits.
    pub fingerprint: String,
    /// The packet's life ended (freed, consumed, delivered) rather than timing out.
    pub complete: bool,
    /// Events for this packet may have been lost (ring buffer full).
    pub lost_events: bool,
    /// The packet was dropped; the last hop carries the reason.
    #[serde(default)]
    pub dropped: bool,
    /// Incomplete because the packet was freed where no probe fires: its
    /// skb address came back with another packet's bytes (TCP's socket
    /// backlog merges segments and frees them so). Not a timeout, and no
    /// event was lost; the last hop is the last place it was seen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended_unseen: bool,
    pub start_ns: u64,
    /// RFC 3339 wall-clock time of the first hop.
    pub wall_start: String,
    pub total_ns: u64,
    /// In JSON a hop whose bytes repeat the previous hop's (the usual case:
    /// most hops see the same headers) has `"same_data":true` instead of
    /// `data` and `l2`; reading it back restores them (see `hops_json`).
    #[serde(with = "hops_json")]
    pub hops: Vec<Hop>,
}

/// Latency between two consecutive probes, over all packets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopPairStats {
    pub from: String,
    pub to: String,
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

/// Events emitted and lost by one probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeCount {
    pub probe: String,
    pub method: String,
    pub events: u64,
    pub lost: u64,
}

/// The whole trace, written last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub packets: u64,
    pub complete: u64,
    pub incomplete: u64,
    /// Of `incomplete`, those that ended unseen (see [`Timeline::ended_unseen`]).
    #[serde(default)]
    pub ended_unseen: u64,
    pub dropped: u64,
    pub events: u64,
    pub lost_events: u64,
    /// `--sample N`: one packet in N was followed (absent: every packet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<u32>,
    pub probes: Vec<ProbeCount>,
    pub hop_pairs: Vec<HopPairStats>,
}

/// A JSON Lines record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Timeline(Timeline),
    Summary(Summary),
}

impl Hop {
    /// In JSON this hop's bytes are written as `"same_data":true`: it has
    /// bytes and they (and their start, `l2`) repeat the previous hop's.
    pub(crate) fn repeats_data_of(&self, prev: Option<&Hop>) -> bool {
        !self.data.is_empty() && prev.is_some_and(|p| p.l2 == self.l2 && p.data == self.data)
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// On the stack for the usual capture sizes: one hex string per hop is
    /// most of what the JSON writer does at high packet rates.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 512];
        match buf.get_mut(..v.len() * 2) {
            Some(out) => {
                hex::encode_to_slice(v, out).map_err(serde::ser::Error::custom)?;
                s.serialize_str(std::str::from_utf8(out).map_err(serde::ser::Error::custom)?)
            }
            None => s.serialize_str(&hex::encode(v)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(D::Error::custom)
    }
}

mod hops_json {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Hop;

    /// A hop as written to JSON: the fields of [`Hop`], borrowed, with
    /// `data`/`l2` left out when they repeat the previous hop's.
    #[derive(Serialize)]
    struct HopOut<'a> {
        probe: &'a str,
        method: &'a str,
        dev: &'a str,
        ifindex: u32,
        netns: u32,
        cpu: u32,
        pid: u32,
        comm: &'a str,
        ts_ns: u64,
        delta_ns: u64,
        len: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        drop_reason: &'a Option<String>,
        #[serde(skip_serializing_if = "<[u8]>::is_empty", with = "super::hex_bytes")]
        data: &'a [u8],
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        l2: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        same_data: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        batch: Option<u32>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        by_time: bool,
    }

    pub fn serialize<S: Serializer>(hops: &[Hop], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(hops.len()))?;
        let mut prev: Option<&Hop> = None;
        for h in hops {
            let same = h.repeats_data_of(prev);
            seq.serialize_element(&HopOut {
                probe: &h.probe,
                method: &h.method,
                dev: &h.dev,
                ifindex: h.ifindex,
                netns: h.netns,
                cpu: h.cpu,
                pid: h.pid,
                comm: &h.comm,
                ts_ns: h.ts_ns,
                delta_ns: h.delta_ns,
                len: h.len,
                drop_reason: &h.drop_reason,
                data: if same { &[] } else { &h.data },
                l2: h.l2 && !same,
                same_data: same,
                batch: h.batch,
                by_time: h.by_time,
            })?;
            prev = Some(h);
        }
        seq.end()
    }

    #[derive(Deserialize)]
    struct HopIn {
        #[serde(flatten)]
        hop: Hop,
        #[serde(default)]
        same_data: bool,
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hop>, D::Error> {
        let raw = Vec::<HopIn>::deserialize(d)?;
        let mut hops: Vec<Hop> = Vec::with_capacity(raw.len());
        for HopIn { mut hop, same_data } in raw {
            if same_data && let Some(p) = hops.last() {
                hop.data = p.data.clone();
                hop.l2 = p.l2;
            }
            hops.push(hop);
        }
        Ok(hops)
    }
}
