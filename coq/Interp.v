(** * The algorithmic semantics of LANGUAGE.md §4: an interpreter with fuel. *)

From Coq Require Import String ZArith List Bool Arith.
From PyPM Require Import Syntax.
Import ListNotations.

(** [OutOfFuel] is kept apart from "no match" ([Ok []]). *)
Inductive outcome : Type :=
  | OutOfFuel
  | Ok (l : list subst).

(** Flat-map an outcome-valued function over a list, left to right. *)
Fixpoint flat_map_out (f : subst -> outcome) (l : list subst) : outcome :=
  match l with
  | [] => Ok []
  | s :: l' =>
      match f s with
      | OutOfFuel => OutOfFuel
      | Ok r =>
          match flat_map_out f l' with
          | OutOfFuel => OutOfFuel
          | Ok r' => Ok (r ++ r')
          end
      end
  end.

Definition obind (o : outcome) (f : subst -> outcome) : outcome :=
  match o with
  | OutOfFuel => OutOfFuel
  | Ok l => flat_map_out f l
  end.

Definition omap (f : list subst -> list subst) (o : outcome) : outcome :=
  match o with
  | OutOfFuel => OutOfFuel
  | Ok l => Ok (f l)
  end.

Definition oapp (o1 o2 : outcome) : outcome :=
  match o1, o2 with
  | Ok l1, Ok l2 => Ok (l1 ++ l2)
  | _, _ => OutOfFuel
  end.

(** Thread σ through [p1/v1 .. pn/vn] (M-Op); [n ≤ m] is checked by the caller. *)
Fixpoint interp_args (m : pat -> value -> subst -> outcome)
         (ps : list pat) (vs : list value) (s : subst) : outcome :=
  match ps, vs with
  | [], _ => Ok [s]
  | p :: ps', v :: vs' => obind (m p v s) (interp_args m ps' vs')
  | _ :: _, [] => Ok []
  end.

(** Bind or compare [x] with [v] (M-Var). *)
Definition bind_var (s : subst) (x : string) (v : value) : option subst :=
  match lookup s x with
  | Some w => if value_eqb w v then Some s else None
  | None => Some (update s x v)
  end.

Definition opt_list (o : option subst) : list subst :=
  match o with Some s => [s] | None => [] end.

(** The frame of a call: [τ(y_i) = σ(x_i)] for every [x_i] that σ binds. *)
Fixpoint frame_in (s : subst) (xs ys : list string) : subst :=
  match xs, ys with
  | x :: xs', y :: ys' =>
      match lookup s x with
      | Some v => update (frame_in s xs' ys') y v
      | None => frame_in s xs' ys'
      end
  | _, _ => []
  end.

(** Copy the parameters that the body bound back to the arguments, comparing
    with those already bound; [None] drops the result. *)
Fixpoint copy_back (t : subst) (xs ys : list string) (s : subst) : option subst :=
  match xs, ys with
  | x :: xs', y :: ys' =>
      match lookup t y with
      | Some w =>
          match bind_var s x w with
          | Some s' => copy_back t xs' ys' s'
          | None => None
          end
      | None => copy_back t xs' ys' s
      end
  | _, _ => Some s
  end.

Section Interp.
Variable D : program.

(** Each step of the interpreter names the rule of §3 it implements. *)
Fixpoint interp (fuel : nat) (p : pat) (v : value) (s : subst) {struct fuel} : outcome :=
  match fuel with
  | O => OutOfFuel
  | S n =>
      match p with
      | PWild => Ok [s]                                             (* M-Wild *)
      | PVar x => Ok (opt_list (bind_var s x v))                    (* M-Var *)
      | PLit l => if value_eqb v (VLit l) then Ok [s] else Ok []    (* M-Lit *)
      | POp f ps =>                                                 (* M-Op *)
          match v with
          | VTerm g vs =>
              if String.eqb f g && (length ps <=? length vs)
              then interp_args (interp n) ps vs s else Ok []
          | VLit _ => Ok []
          end
      | POpVar x ps =>                                              (* M-OpVar *)
          match v with
          | VTerm g vs =>
              if length ps <=? length vs then
                match bind_var s x (VLit (LStr g)) with
                | Some s' => interp_args (interp n) ps vs s'
                | None => Ok []
                end
              else Ok []
          | VLit _ => Ok []
          end
      | PAlt p1 p2 => oapp (interp n p1 v s) (interp n p2 v s)       (* M-AltL, M-AltR *)
      | PExists x p =>                                              (* M-Exists *)
          omap (map (fun s' => restore s' x (lookup s x))) (interp n p v (remove s x))
      | PCall P xs =>                                               (* M-Call *)
          match lookup_def D P with
          | Some d =>
              if length xs =? length (def_params d) then
                omap (flat_map (fun t => opt_list (copy_back t xs (def_params d) s)))
                     (interp n (def_body d) v (frame_in s xs (def_params d)))
              else Ok []
          | None => Ok []
          end
      | PGuard p g => omap (filter (fun s' => eval_guard s' g)) (interp n p v s)  (* M-Guard *)
      | PThen p x q =>                                              (* M-Then *)
          obind (interp n p v s)
                (fun s' => match lookup s' x with
                           | Some w => interp n q w s'
                           | None => Ok []
                           end)
      | PFail => Ok []                                              (* no rule *)
      end
  end.

End Interp.

(** The fuel of §6: enough for guarded programs (see [Totality.v]). *)
Definition fuel_bound (D : program) (p : pat) (v : value) : nat :=
  (vsize v + 1) * (dsize D + psize p).
