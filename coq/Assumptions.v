(* Each main theorem must depend on no axiom: make writes this file's output to
   assumptions.txt and tests/test_coq.py checks it. *)
From PyPM Require Import Syntax Semantics WellFormed Interp InterpProof Totality InterpList Regions Fast Rename.

Print Assumptions interp_sound.
Print Assumptions interp_complete.
Print Assumptions interp_fuel_mono.
Print Assumptions sem_monotone.
Print Assumptions guard_local.
Print Assumptions check_wf.
Print Assumptions check_program_with_wf.
Print Assumptions check_program_wf.
Print Assumptions guardedb_guarded.
Print Assumptions check_guarded_wf.
Print Assumptions interp_total_guarded.
Print Assumptions interp_complete_guarded.
Print Assumptions extracted_interp_total.
Print Assumptions interp_sound_list.
Print Assumptions interp_complete_list.
Print Assumptions results_det.
Print Assumptions interp_list_iff.
Print Assumptions extracted_interp_exact.
Print Assumptions interp_r_erase.
Print Assumptions fastmatch_correct_monoid.
Print Assumptions fastmatch_correct.
Print Assumptions fastmatch_first.
Print Assumptions fastmatch_stops.
Print Assumptions interp_r_fuel_mono.
Print Assumptions rename_sim_all.
Print Assumptions inline_call_correct.
