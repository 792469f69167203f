//! Resolving `--dev` and `--netns` to what the kernel programs compare:
//! an ifindex and a netns inode number.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    pub dev: String,
    pub ifindex: u32,
    pub netns_inode: u32,
    /// How the user named the netns (or "host").
    pub netns_label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no network namespace named {name:?} in /run/netns; namespaces there: {known}")]
    NoSuchNetnsName { name: String, known: String },
    #[error("cannot open network namespace {path}: {source}")]
    NetnsPath {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "no process or /run/netns entry holds network namespace inode {0}; pass a name from `ip netns list` or a path like /proc/PID/ns/net"
    )]
    NoSuchNetnsInode(u64),
    #[error("no device {dev:?} in network namespace {netns}; devices there: {known}")]
    NoSuchDevice {
        dev: String,
        netns: String,
        known: String,
    },
    #[error("cannot enter network namespace {netns}: {source}")]
    Setns { netns: String, source: nix::Error },
}

/// Names in /run/netns, for error messages.
pub fn netns_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

/// Finds the namespace's path: NAME (in /run/netns), a PATH, or an INODE.
pub fn netns_path(spec: &str) -> Result<PathBuf, TargetError> {
    if let Ok(inode) = spec.parse::<u64>() {
        return find_netns_by_inode(inode).ok_or(TargetError::NoSuchNetnsInode(inode));
    }
    if spec.contains('/') {
        let p = PathBuf::from(spec);
        std::fs::metadata(&p).map_err(|source| TargetError::NetnsPath {
            path: spec.into(),
            source,
        })?;
        return Ok(p);
    }
    let p = Path::new("/run/netns").join(spec);
    if !p.exists() {
        return Err(TargetError::NoSuchNetnsName {
            name: spec.into(),
            known: list_or_none(&netns_names()),
        });
    }
    Ok(p)
}

fn inode_of(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.ino())
}

fn find_netns_by_inode(inode: u64) -> Option<PathBuf> {
    if inode_of(Path::new("/proc/self/ns/net")) == Some(inode) {
        return Some("/proc/self/ns/net".into());
    }
    for name in netns_names() {
        let p = Path::new("/run/netns").join(name);
        if inode_of(&p) == Some(inode) {
            return Some(p);
        }
    }
    let procs = std::fs::read_dir("/proc").ok()?;
    for e in procs.filter_map(|e| e.ok()) {
        let p = e.path().join("ns/net");
        if inode_of(&p) == Some(inode) {
            return Some(p);
        }
    }
    None
}

/// Resolves DEV in the given netns (None: this process's netns).
pub fn resolve(dev: &str, netns: Option<&str>) -> Result<Target, TargetError> {
    let (path, label) = match netns {
        Some(spec) => (netns_path(spec)?, spec.to_string()),
        None => (PathBuf::from("/proc/self/ns/net"), "host".to_string()),
    };
    let netns_inode = inode_of(&path).unwrap_or(0) as u32;
    let dev_owned = dev.to_string();
    let label2 = label.clone();
    // setns changes only the calling thread: do the lookup on a thread of
    // its own so the rest of skbtrace stays in its namespace.
    let lookup = std::thread::spawn(move || -> Result<u32, TargetError> {
        let f = std::fs::File::open(&path).map_err(|source| TargetError::NetnsPath {
            path: path.display().to_string(),
            source,
        })?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
            TargetError::Setns {
                netns: label2.clone(),
                source,
            }
        })?;
        match nix::net::if_::if_nametoindex(dev_owned.as_str()) {
            Ok(i) => Ok(i),
            Err(_) => {
                let mut known: Vec<String> = nix::net::if_::if_nameindex()
                    .map(|l| {
                        l.iter()
                            .map(|i| i.name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                known.sort();
                Err(TargetError::NoSuchDevice {
                    dev: dev_owned,
                    netns: label2,
                    known: list_or_none(&known),
                })
            }
        }
    });
    let ifindex = lookup.join().unwrap_or_else(|_| {
        Err(TargetError::NoSuchDevice {
            dev: dev.into(),
            netns: label.clone(),
            known: "?".into(),
        })
    })?;
    Ok(Target {
        dev: dev.into(),
        ifindex,
        netns_inode,
        netns_label: label,
    })
}

/// Inode -> name for every namespace in /run/netns (for display).
pub fn netns_name_map() -> std::collections::HashMap<u32, String> {
    let mut m = std::collections::HashMap::new();
    // PID 1's namespace can be closed to us (EACCES in some sandboxes,
    // root or not); ours is then the best guess, as the banner's "host" is.
    // A name from /run/netns still wins below.
    if let Some(i) =
        inode_of(Path::new("/proc/1/ns/net")).or_else(|| inode_of(Path::new("/proc/self/ns/net")))
    {
        m.insert(i as u32, "host".to_string());
    }
    for n in netns_names() {
        if let Some(i) = inode_of(&Path::new("/run/netns").join(&n)) {
            m.insert(i as u32, n);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolves_in_this_netns() {
        let t = resolve("lo", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.ifindex, 1);
        assert_eq!(
            t.netns_inode as u64,
            inode_of(Path::new("/proc/self/ns/net")).unwrap()
        );
    }

    #[test]
    fn the_namespace_we_run_in_has_a_name_to_show() {
        // Hops there were shown as a bare inode where /proc/1/ns/net is
        // closed to us (this project's CI machine).
        let ino = inode_of(Path::new("/proc/self/ns/net")).unwrap() as u32;
        let names = netns_name_map();
        assert!(names.contains_key(&ino), "{names:?}");
    }

    #[test]
    fn unknown_device_lists_what_exists() {
        let e = resolve("nosuchdev0", None).unwrap_err().to_string();
        assert!(e.contains("nosuchdev0") && e.contains("lo"), "{e}");
    }

    #[test]
    fn unknown_netns_name_and_inode_are_errors() {
        let e = resolve("lo", Some("skbtrace-no-such-ns"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("skbtrace-no-such-ns") && e.contains("/run/netns"),
            "{e}"
        );
        let e = resolve("lo", Some("12345")).unwrap_err().to_string();
        assert!(e.contains("12345"), "{e}");
    }

    #[test]
    fn own_netns_by_inode_and_path() {
        let ino = inode_of(Path::new("/proc/self/ns/net")).unwrap();
        let t = resolve("lo", Some(&ino.to_string())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.netns_inode as u64, ino);
        let t = resolve("lo", Some("/proc/self/ns/net")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.netns_inode as u64, ino);
    }
}
