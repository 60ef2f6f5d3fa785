(** * Extraction of the interpreter to OCaml (driven by [extract/driver.ml]). *)

From Coq Require Import Extraction ExtrOcamlBasic ExtrOcamlNativeString ExtrOcamlZInt
  ExtrOcamlNatInt.
From PyPM Require Import Syntax Interp WellFormed Totality Regions.

Extraction Language OCaml.
(* [interp_r]: the interpreter with regions (Regions.v), for the differential test of regions. *)
Extraction "extract/pypm.ml" interp interp_r fuel_bound check_program check_query check_guarded.
