(** * Extraction of the interpreter to OCaml (driven by [extract/driver.ml]). *)

From Coq Require Import Extraction ExtrOcamlBasic ExtrOcamlNativeString ExtrOcamlZInt
  ExtrOcamlNatInt.
From PyPM Require Import Syntax Interp WellFormed Totality.

Extraction Language OCaml.
Extraction "extract/pypm.ml" interp fuel_bound check_program check_query check_guarded.
