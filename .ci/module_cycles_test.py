#!/usr/bin/env python3
"""Proves `module_cycles.py` can fail: crates with planted circles (through `crate::`,
`super::`, a use group, a root re-export, a binary's own modules and a nested sim crate)
are reported, and look-alikes that are not circles (comments, strings, a test module's
`super::*`, paths that stay inside one module) are not.

`python3 .ci/module_cycles_test.py`
"""

import tempfile
import textwrap
import unittest
from pathlib import Path

import module_cycles


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


MANIFEST = '[package]\nname = "fixture"\n'


class PlantedCircles(unittest.TestCase):
    def reports(self, files: dict[str, str], skip=frozenset()) -> list[str]:
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(tmp)
            write(repo, files)
            return module_cycles.check(repo, skip)

    def test_a_circle_through_crate_paths_is_reported_with_its_lines(self):
        reports = self.reports(
            {
                "crates/one/Cargo.toml": MANIFEST,
                "crates/one/src/lib.rs": "mod a;\nmod b;\n",
                "crates/one/src/a.rs": "use crate::b::B;\npub struct A;\n",
                "crates/one/src/b.rs": "pub struct B;\nfn f() -> crate::a::A { crate::a::A }\n",
            }
        )
        self.assertEqual(len(reports), 1, reports)
        self.assertIn("crates/one: a -> b -> a", reports[0])
        self.assertIn("crates/one/src/a.rs:1", reports[0])
        self.assertIn("crates/one/src/b.rs:2", reports[0])

    def test_super_paths_groups_and_reexports_are_edges(self):
        reports = self.reports(
            {
                "crates/two/Cargo.toml": MANIFEST,
                "crates/two/src/lib.rs": "mod a;\nmod b;\nmod c;\npub use c::C;\n",
                # a/inner.rs: `super::super::b` leaves `a` for `b`.
                "crates/two/src/a/mod.rs": "mod inner;\n",
                "crates/two/src/a/inner.rs": "use super::super::b::B;\n",
                # b: a use group naming `c`.
                "crates/two/src/b.rs": "use crate::{c::Other, b::Own};\npub struct B;\n",
                # c: `super::` from a file at the top is the crate root.
                "crates/two/src/c.rs": "use super::a::X;\npub struct C;\n",
            }
        )
        self.assertEqual(len(reports), 1, reports)
        self.assertIn("a -> b -> c -> a", reports[0])

    def test_a_root_reexport_leads_to_its_module(self):
        reports = self.reports(
            {
                "crates/three/Cargo.toml": MANIFEST,
                "crates/three/src/lib.rs": "mod x;\nmod y;\npub use y::{Why, Other as Renamed};\n",
                "crates/three/src/x.rs": "use crate::Renamed;\npub struct Ex;\n",
                "crates/three/src/y.rs": "use crate::x::Ex;\npub struct Why;\n",
            }
        )
        self.assertEqual(len(reports), 1, reports)
        self.assertIn("x -> y -> x", reports[0])

    def test_binaries_and_nested_sim_crates_are_checked(self):
        reports = self.reports(
            {
                "crates/four/Cargo.toml": MANIFEST,
                "crates/four/src/lib.rs": "",
                "crates/four/src/bin/tool/main.rs": "mod p;\nmod q;\n",
                "crates/four/src/bin/tool/p.rs": "use crate::q::Q;\n",
                "crates/four/src/bin/tool/q.rs": "use crate::p::P;\n",
                "sim/inner/Cargo.toml": MANIFEST,
                "sim/inner/src/lib.rs": "pub mod m;\npub mod n;\n",
                "sim/inner/src/m.rs": "use crate::n;\n",
                "sim/inner/src/n.rs": "use crate::m;\n",
            }
        )
        self.assertEqual(len(reports), 2, reports)
        self.assertIn("crates/four (bin/tool/main.rs): p -> q -> p", reports[0])
        self.assertIn("sim/inner: m -> n -> m", reports[1])

    def test_a_skipped_crate_is_not_reported(self):
        files = {
            "sim/Cargo.toml": MANIFEST,
            "sim/src/lib.rs": "mod a;\nmod b;\n",
            "sim/src/a.rs": "use crate::b::B;\n",
            "sim/src/b.rs": "use crate::a::A;\n",
        }
        self.assertEqual(len(self.reports(files)), 1)
        self.assertEqual(self.reports(files, frozenset({"sim"})), [])

    def test_look_alikes_are_not_edges(self):
        reports = self.reports(
            {
                "crates/five/Cargo.toml": MANIFEST,
                "crates/five/src/lib.rs": "mod a;\nmod b;\n",
                "crates/five/src/a.rs": "use crate::b::B;\npub struct A;\n",
                "crates/five/src/b.rs": textwrap.dedent(
                    """\
                    //! Links to [`A`](crate::a::A) in docs are not imports.
                    pub struct B;
                    /* crate::a::A in a block comment */
                    const S: &str = "crate::a::A";
                    const R: &str = r#"super::a::A"#;
                    fn own() { self::helper(); crate::b::helper(); }
                    fn helper() {}
                    #[cfg(test)]
                    mod tests {
                        use super::*;
                        use super::super::b::B as Same;
                    }
                    """
                ),
            }
        )
        self.assertEqual(reports, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
