//! `sweep_tree`: a small tree decoded from the input (files, directories, symlinks that
//! dangle, point at their parent, or point outside the root; each with an age around
//! the cutoff; some excluded) is built in a temp dir and swept for real.
//!
//! The model, from the documented rules: an excluded entry stays with all it holds; a
//! file or symlink stays iff it is not strictly older than the cutoff (a future time
//! counts as new); a directory stays iff it is young or anything in it stays; the root
//! always stays. The check:
//!
//! - a dry run removes nothing and reports the same counts as the real run;
//! - after the real run exactly the model's paths remain, and the report's removals add
//!   up to what disappeared, with no errors;
//! - nothing outside the root is touched (an old file and an old directory beside it,
//!   reachable through symlinks, survive with their contents).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backstop_sweep::Sweep;
use filetime::FileTime;

use crate::input::Input;
use crate::{Violation, ensure};

/// Most entries in one tree: each costs a few system calls per run.
pub const MAX_NODES: usize = 48;

/// Deepest directory nesting below the root.
pub const MAX_DEPTH: usize = 4;

const OLDER_THAN: Duration = Duration::from_secs(24 * 3600);

/// The virtual now: ages are set relative to it, so they do not depend on the real clock.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(2_000_000_000)
}

/// An age relative to [`now`], in seconds (negative: in the future), around the cutoff.
const AGES_S: [i64; 6] = [
    -3600,
    3600,
    24 * 3600 - 1,
    24 * 3600, // exactly the cutoff: not strictly older, stays
    24 * 3600 + 1,
    3 * 24 * 3600,
];

#[derive(Debug)]
enum Target {
    Dangling,
    Parent,
    Outside,
}

#[derive(Debug)]
enum Kind {
    File,
    Link(Target),
    Dir(Vec<Node>),
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    age_s: i64,
    excluded: bool,
}

impl Node {
    fn old(&self) -> bool {
        self.age_s > OLDER_THAN.as_secs() as i64
    }
}

fn decode(input: &mut Input<'_>, depth: usize, budget: &mut usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    while *budget > 0 && !input.is_empty() {
        let tag = input.u8();
        // The top bits end a directory early, so short inputs make shallow trees.
        if tag >= 0xe0 {
            break;
        }
        *budget -= 1;
        let age_s = AGES_S[usize::from(input.below(AGES_S.len() as u8))];
        let excluded = tag & 0x10 != 0 && tag & 0x20 != 0;
        let kind = match tag % 6 {
            0 | 1 => Kind::File,
            2 => Kind::Link(Target::Dangling),
            3 => Kind::Link(Target::Parent),
            4 => Kind::Link(Target::Outside),
            _ if depth < MAX_DEPTH => Kind::Dir(decode(input, depth + 1, budget)),
            _ => Kind::File,
        };
        nodes.push(Node {
            kind,
            age_s,
            excluded,
        });
    }
    nodes
}

fn name(i: usize, node: &Node) -> String {
    if node.excluded {
        format!("n{i}.keep")
    } else {
        format!("n{i}")
    }
}

fn at_age(age_s: i64) -> FileTime {
    let t = if age_s >= 0 {
        now() - Duration::from_secs(age_s.unsigned_abs())
    } else {
        now() + Duration::from_secs(age_s.unsigned_abs())
    };
    FileTime::from_system_time(t)
}

fn set_age(path: &Path, age_s: i64) -> std::io::Result<()> {
    let t = at_age(age_s);
    filetime::set_symlink_file_times(path, t, t)
}

/// Creates `nodes` in `dir`; a directory's own age is set after its children, since
/// creating them changes it.
fn build(dir: &Path, nodes: &[Node], outside: &Path) -> std::io::Result<()> {
    for (i, node) in nodes.iter().enumerate() {
        let path = dir.join(name(i, node));
        match &node.kind {
            Kind::File => fs::write(&path, vec![b'x'; i % 3])?,
            Kind::Link(Target::Dangling) => std::os::unix::fs::symlink("nowhere", &path)?,
            Kind::Link(Target::Parent) => std::os::unix::fs::symlink("..", &path)?,
            Kind::Link(Target::Outside) => std::os::unix::fs::symlink(outside, &path)?,
            Kind::Dir(children) => {
                fs::create_dir(&path)?;
                build(&path, children, outside)?;
            }
        }
        set_age(&path, node.age_s)?;
    }
    Ok(())
}

/// The paths that must remain under `rel`; returns whether any does.
fn model(rel: &Path, nodes: &[Node], kept: &mut BTreeSet<PathBuf>) {
    for (i, node) in nodes.iter().enumerate() {
        let path = rel.join(name(i, node));
        match &node.kind {
            _ if node.excluded => {
                everything(&path, node, kept);
            }
            Kind::Dir(children) => {
                let before = kept.len();
                model(&path, children, kept);
                if kept.len() > before || !node.old() {
                    kept.insert(path);
                }
            }
            _ => {
                if !node.old() {
                    kept.insert(path);
                }
            }
        }
    }
}

fn everything(path: &Path, node: &Node, kept: &mut BTreeSet<PathBuf>) {
    kept.insert(path.to_path_buf());
    if let Kind::Dir(children) = &node.kind {
        for (i, child) in children.iter().enumerate() {
            everything(&path.join(name(i, child)), child, kept);
        }
    }
}

/// Every path under `root`, relative, not following symlinks.
fn listing(root: &Path) -> std::io::Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path.clone());
            }
            out.insert(
                path.strip_prefix(root)
                    .expect("under the root")
                    .to_path_buf(),
            );
        }
    }
    Ok(out)
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Violation + '_ {
    move |e| Violation::new(format!("{what}: {e}"))
}

/// The `sweep_tree` check.
///
/// # Errors
///
/// A [`Violation`] where the sweep removed something the model keeps, kept something it
/// removes, reported otherwise, or touched anything outside the root; also when the temp
/// tree cannot be built (the machine's fault, not an input's).
pub fn check(data: &[u8]) -> Result<(), Violation> {
    let mut input = Input::new(data);
    let threads = 1 + usize::from(input.below(3));
    let mut budget = MAX_NODES;
    let nodes = decode(&mut input, 0, &mut budget);

    let base = tempfile::tempdir().map_err(io("temp dir"))?;
    let (root, outside) = (base.path().join("root"), base.path().join("outside"));
    fs::create_dir_all(outside.join("old-dir")).map_err(io("outside"))?;
    fs::write(outside.join("old-dir/victim"), b"keep").map_err(io("outside"))?;
    fs::write(outside.join("victim"), b"keep").map_err(io("outside"))?;
    for path in ["old-dir/victim", "victim", "old-dir", ""] {
        set_age(&outside.join(path), 30 * 24 * 3600).map_err(io("outside"))?;
    }
    let outside_before = listing(&outside).map_err(io("listing outside"))?;
    fs::create_dir(&root).map_err(io("root"))?;
    build(&root, &nodes, &outside).map_err(io("building the tree"))?;
    // An old, soon empty root: it must stay all the same.
    set_age(&root, 30 * 24 * 3600).map_err(io("root age"))?;
    let before = listing(&root).map_err(io("listing"))?;

    let sweep = Sweep::new(&root)
        .now(now())
        .older_than(OLDER_THAN)
        .threads(threads)
        .exclude("*.keep")
        .map_err(|e| Violation::new(format!("exclude refused: {e}")))?;
    let dry = sweep
        .clone()
        .dry_run(true)
        .run()
        .map_err(|e| Violation::new(format!("dry run failed: {e}")))?;
    let after_dry = listing(&root).map_err(io("listing"))?;
    ensure!(
        after_dry == before,
        "the dry run changed the tree: {:?}",
        before.symmetric_difference(&after_dry).collect::<Vec<_>>()
    );
    let real = sweep
        .run()
        .map_err(|e| Violation::new(format!("sweep failed: {e}")))?;

    let after = listing(&root).map_err(io("listing"))?;
    let mut kept = BTreeSet::new();
    model(Path::new(""), &nodes, &mut kept);
    ensure!(
        after == kept,
        "tree {nodes:?}\nremoved but kept by the model: {:?}\nkept but removed by the model: {:?}",
        kept.difference(&after).collect::<Vec<_>>(),
        after.difference(&kept).collect::<Vec<_>>()
    );
    ensure!(real.errors.total() == 0, "errors: {:?}", real.errors);
    let removed = real.files_removed + real.symlinks_removed + real.dirs_removed;
    ensure!(
        removed == (before.len() - after.len()) as u64,
        "report says {removed} removed, {} disappeared",
        before.len() - after.len()
    );
    let counts =
        |r: &backstop_sweep::SweepReport| (r.files_removed, r.symlinks_removed, r.dirs_removed);
    ensure!(
        counts(&dry) == counts(&real),
        "dry run {:?}, real run {:?}",
        counts(&dry),
        counts(&real)
    );
    ensure!(root.is_dir(), "the root was removed");
    let outside_after = listing(&outside).map_err(io("listing outside"))?;
    ensure!(
        outside_after == outside_before,
        "outside the root changed: {outside_after:?}"
    );
    Ok(())
}
