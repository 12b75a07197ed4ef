//! Random trees of files, directories and symlinks with random ages and exclusions,
//! swept for real, against a simple model of what must remain.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use backstop_sweep::Sweep;
use common::{listing, now, old, set_mtime, young};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Node {
    File {
        old: bool,
        excluded: bool,
    },
    Link {
        old: bool,
        excluded: bool,
        outside: bool,
    },
    Dir {
        old: bool,
        excluded: bool,
        children: Vec<Node>,
    },
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(old, excluded)| Node::File { old, excluded }),
        (any::<bool>(), prop::bool::weighted(0.2), any::<bool>()).prop_map(
            |(old, excluded, outside)| Node::Link {
                old,
                excluded,
                outside
            }
        ),
    ];
    leaf.prop_recursive(3, 40, 5, |inner| {
        (
            any::<bool>(),
            prop::bool::weighted(0.15),
            prop::collection::vec(inner, 0..5),
        )
            .prop_map(|(old, excluded, children)| Node::Dir {
                old,
                excluded,
                children,
            })
    })
}

fn name(i: usize, excluded: bool) -> String {
    if excluded {
        format!("n{i}.keep")
    } else {
        format!("n{i}")
    }
}

/// Creates `nodes` under `dir`, then sets every age bottom-up (creating a child changes
/// its parent's mtime, so a directory's own age is set last).
fn build(dir: &Path, nodes: &[Node], outside: &Path) {
    for (i, node) in nodes.iter().enumerate() {
        match node {
            Node::File { old: o, excluded } => {
                let path = dir.join(name(i, *excluded));
                fs::write(&path, b"data").unwrap();
                set_mtime(&path, if *o { old() } else { young() });
            }
            Node::Link {
                old: o,
                excluded,
                outside: out,
            } => {
                let path = dir.join(name(i, *excluded));
                let target = if *out {
                    outside.to_path_buf()
                } else {
                    PathBuf::from("nowhere")
                };
                std::os::unix::fs::symlink(target, &path).unwrap();
                set_mtime(&path, if *o { old() } else { young() });
            }
            Node::Dir {
                old: o,
                excluded,
                children,
            } => {
                let path = dir.join(name(i, *excluded));
                fs::create_dir(&path).unwrap();
                build(&path, children, outside);
                set_mtime(&path, if *o { old() } else { young() });
            }
        }
    }
}

/// The model: an excluded entry stays with all it holds; a file or link stays iff it is
/// young; a directory stays iff it is young or anything in it stays.
fn expected(rel: &Path, nodes: &[Node], out: &mut BTreeSet<PathBuf>) {
    for (i, node) in nodes.iter().enumerate() {
        match node {
            Node::File { old, excluded } | Node::Link { old, excluded, .. } => {
                if *excluded || !*old {
                    out.insert(rel.join(name(i, *excluded)));
                }
            }
            Node::Dir {
                old,
                excluded,
                children,
            } => {
                let path = rel.join(name(i, *excluded));
                if *excluded {
                    out.insert(path.clone());
                    everything(&path, children, out);
                    continue;
                }
                let before = out.len();
                expected(&path, children, out);
                if out.len() > before || !*old {
                    out.insert(path);
                }
            }
        }
    }
}

fn everything(rel: &Path, nodes: &[Node], out: &mut BTreeSet<PathBuf>) {
    for (i, node) in nodes.iter().enumerate() {
        let (excluded, children) = match node {
            Node::File { excluded, .. } | Node::Link { excluded, .. } => (*excluded, None),
            Node::Dir {
                excluded, children, ..
            } => (*excluded, Some(children)),
        };
        let path = rel.join(name(i, excluded));
        out.insert(path.clone());
        if let Some(children) = children {
            everything(&path, children, out);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn what_remains_matches_the_model(nodes in prop::collection::vec(node(), 0..8), threads in 1usize..4) {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("victim"), b"keep me").unwrap();
        set_mtime(&outside.path().join("victim"), old());
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), &nodes, outside.path());
        let before = listing(dir.path());

        let configured = Sweep::new(dir.path()).now(now()).threads(threads).exclude("*.keep").unwrap();
        let dry = configured.clone().dry_run(true).run().unwrap();
        prop_assert_eq!(listing(dir.path()), before.clone());
        let real = configured.run().unwrap();

        let mut model = BTreeSet::new();
        expected(Path::new(""), &nodes, &mut model);
        prop_assert_eq!(listing(dir.path()), model.clone());
        prop_assert_eq!(real.errors.total(), 0);
        prop_assert_eq!(
            real.files_removed + real.symlinks_removed + real.dirs_removed,
            (before.len() - model.len()) as u64
        );
        prop_assert_eq!(dry.files_removed, real.files_removed);
        prop_assert_eq!(dry.symlinks_removed, real.symlinks_removed);
        prop_assert_eq!(dry.dirs_removed, real.dirs_removed);
        prop_assert!(outside.path().join("victim").exists());
    }
}
