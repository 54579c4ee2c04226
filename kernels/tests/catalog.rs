//! The catalog: parsing, typed errors, and every entry against its reference.

mod common;

use ndarray::{Array1, Array2, s};
use shmpar_kernels::Error;
use shmpar_kernels::catalog::{AnyPartial, BuiltinReduction, Elementwise, ReductionValue};
use shmpar_kernels::reduce::{Reduction, UnaryReduction};

#[test]
fn every_name_parses_and_displays_back() {
    for name in Elementwise::NAMES {
        let k: Elementwise = name.parse().expect("catalog name");
        assert_eq!(k.name(), *name);
        assert_eq!(k.to_string().parse::<Elementwise>().expect("round trip"), k);
    }
    for name in BuiltinReduction::NAMES {
        let r: BuiltinReduction = name.parse().expect("catalog name");
        assert_eq!(r.name(), *name);
        assert_eq!(r.to_string().parse::<BuiltinReduction>().expect("round trip"), r);
    }
    assert_eq!("scale:0.5".parse::<Elementwise>(), Ok(Elementwise::Scale(0.5)));
    assert_eq!(
        " Clamp:-1:1 ".parse::<Elementwise>(),
        Ok(Elementwise::Clamp { lo: -1.0, hi: 1.0 })
    );
    assert_eq!(
        "var:1".parse::<BuiltinReduction>(),
        Ok(BuiltinReduction::Var { ddof: 1 })
    );
}

#[test]
fn unknown_names_and_bad_parameters_are_typed_errors() {
    let err = "cube".parse::<Elementwise>().unwrap_err();
    match &err {
        Error::UnknownKernel { name, valid, .. } => {
            assert_eq!(name, "cube");
            assert!(valid.contains(&"sqrt_abs"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("sqrt, abs, sqrt_abs"), "{err}");
    assert!(matches!(
        "median".parse::<BuiltinReduction>(),
        Err(Error::UnknownKernel { .. })
    ));
    for bad in ["scale:x", "sqrt:1", "clamp:1:0", "clamp:0:1:2"] {
        assert!(
            matches!(bad.parse::<Elementwise>(), Err(Error::InvalidParameter { .. })),
            "{bad}"
        );
    }
    for bad in [
        "var:-1",
        "var:0.5",
        "histogram:1:0:4",
        "histogram:0:1:0",
        "histogram:0:1:2.5",
        "sum:3",
    ] {
        assert!(
            matches!(
                bad.parse::<BuiltinReduction>(),
                Err(Error::InvalidParameter { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn elementwise_entries_match_their_reference() {
    let base = Array2::from_shape_vec((50, 41), common::noise(50 * 41, 3)).expect("shape");
    for name in Elementwise::NAMES {
        let k: Elementwise = name.parse().expect("catalog name");
        let mut got = base.clone();
        let mut want = base.clone();
        k.apply(got.slice_mut(s![3.., 1..])).expect("valid");
        k.apply_reference(want.slice_mut(s![3.., 1..]));
        for (g, w) in got.iter().zip(&want) {
            assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{name}");
        }
        let mut g32 = base.mapv(|x| x as f32);
        let mut w32 = g32.clone();
        k.apply(g32.view_mut()).expect("valid");
        k.apply_reference(w32.view_mut());
        for (g, w) in g32.iter().zip(&w32) {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{name} f32"
            );
        }
    }
}

#[test]
fn reduction_entries_match_their_reference_when_chunked() {
    let a = Array1::from(common::noise(12_345, 4));
    let specs = [
        "sum",
        "mean",
        "min",
        "max",
        "min_max",
        "var",
        "var:1",
        "std:1",
        "norm",
        "histogram:-1:1:37",
    ];
    for spec in specs {
        let r: BuiltinReduction = spec.parse().expect("catalog spec");
        let want = r.reference(a.view());
        for k in [1, 4, 9] {
            let partials = common::uneven_chunks(a.len(), k)
                .into_iter()
                .map(|rows| r.partial(a.slice(s![rows])));
            // Partials travel through serde in the runtime's general path.
            let partials: Vec<AnyPartial> = partials
                .map(|p| serde_json::from_str(&serde_json::to_string(&p).expect("ser")).expect("de"))
                .collect();
            let got = r.finish(r.combine_all(partials)).expect("same reduction");
            assert!(got.close_to(&want, 1e-13), "{spec} k={k}: {got} vs {want}");
        }
        // f32 input too.
        let a32 = a.mapv(|x| x as f32);
        let got = r.reduce(a32.view()).expect("same reduction");
        assert!(got.close_to(&r.reference(a32.view()), 1e-13), "{spec} f32");
    }
    // Empty input.
    let e = Array1::<f64>::zeros(0);
    let min: BuiltinReduction = "min".parse().expect("name");
    assert_eq!(min.reduce(e.view()), Ok(ReductionValue::Empty));
    assert_eq!(min.reference(e.view()), ReductionValue::Empty);
}

#[test]
fn mixing_partials_of_different_reductions_is_reported() {
    let a = Array1::from(vec![1.0_f64, 2.0]);
    let sum: BuiltinReduction = "sum".parse().expect("name");
    let mean: BuiltinReduction = "mean".parse().expect("name");
    let p = sum.combine(sum.partial(a.view()), mean.partial(a.view()));
    assert_eq!(p, AnyPartial::Mismatch);
    assert!(matches!(sum.finish(p), Err(Error::PartialMismatch { .. })));
    assert!(matches!(
        sum.finish(mean.partial(a.view())),
        Err(Error::PartialMismatch { .. })
    ));
}
