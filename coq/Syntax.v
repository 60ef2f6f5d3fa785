(** * Syntax: values, guards, patterns and programs (LANGUAGE.md §1, §2). *)

From Coq Require Import String ZArith List Bool.
Import ListNotations.

(** ** Literals and values (§1) *)

(** Literals: integers, strings, booleans, [None] and tuples of literals.
    Floats and dtypes of §1 are left out; they add nothing to the matching
    calculus. *)
Inductive literal : Type :=
  | LInt (z : Z)
  | LStr (s : string)
  | LBool (b : bool)
  | LNone
  | LTuple (ls : list literal).

(** A value is a term [f(v1..vn)] or a literal. *)
Inductive value : Type :=
  | VTerm (f : string) (args : list value)
  | VLit (l : literal).

(** Induction over literals, with the nested tuple list. *)
Section LiteralInd.
  Variable P : literal -> Prop.
  Hypothesis HInt : forall z, P (LInt z).
  Hypothesis HStr : forall s, P (LStr s).
  Hypothesis HBool : forall b, P (LBool b).
  Hypothesis HNone : P LNone.
  Hypothesis HTuple : forall ls, Forall P ls -> P (LTuple ls).

  Fixpoint literal_ind' (l : literal) : P l :=
    match l with
    | LInt z => HInt z
    | LStr s => HStr s
    | LBool b => HBool b
    | LNone => HNone
    | LTuple ls =>
        HTuple ls
          ((fix go (ls : list literal) : Forall P ls :=
              match ls with
              | [] => Forall_nil P
              | m :: ms => Forall_cons m (literal_ind' m) (go ms)
              end) ls)
    end.
End LiteralInd.

(** Induction over values, with the nested argument list. *)
Section ValueInd.
  Variable P : value -> Prop.
  Hypothesis HTerm : forall f vs, Forall P vs -> P (VTerm f vs).
  Hypothesis HLit : forall l, P (VLit l).

  Fixpoint value_ind' (v : value) : P v :=
    match v with
    | VTerm f vs =>
        HTerm f vs
          ((fix go (vs : list value) : Forall P vs :=
              match vs with
              | [] => Forall_nil P
              | w :: ws => Forall_cons w (value_ind' w) (go ws)
              end) vs)
    | VLit l => HLit l
    end.
End ValueInd.

Fixpoint literal_eqb (a b : literal) : bool :=
  match a, b with
  | LInt x, LInt y => Z.eqb x y
  | LStr x, LStr y => String.eqb x y
  | LBool x, LBool y => Bool.eqb x y
  | LNone, LNone => true
  | LTuple xs, LTuple ys =>
      (fix go (xs ys : list literal) : bool :=
         match xs, ys with
         | [], [] => true
         | x :: xs', y :: ys' => literal_eqb x y && go xs' ys'
         | _, _ => false
         end) xs ys
  | _, _ => false
  end.

Lemma literal_eqb_spec : forall a b, literal_eqb a b = true <-> a = b.
Proof.
  induction a as [x | x | x | | xs IH] using literal_ind';
    destruct b as [y | y | y | | ys]; simpl; split; intro H; try discriminate; try congruence.
  all: try first [ apply Z.eqb_eq in H; congruence | inversion H; apply Z.eqb_refl
                 | apply String.eqb_eq in H; congruence | inversion H; apply String.eqb_refl
                 | apply Bool.eqb_prop in H; congruence | inversion H; apply Bool.eqb_reflx ].
  - f_equal. revert ys H. induction IH as [| a xs' Ha _ IHxs]; intros [| b ys'] H;
      try discriminate; auto.
    apply andb_prop in H as [H1 H2]. apply Ha in H1; subst. f_equal. apply IHxs in H2.
    congruence.
  - inversion H; subst. clear H. induction IH as [| a xs' Ha _ IHxs]; auto.
    rewrite (proj2 (Ha a) eq_refl). simpl. exact IHxs.
Qed.

(** Structural equality of values, decidable. *)
Fixpoint value_eqb (v w : value) : bool :=
  match v, w with
  | VTerm f vs, VTerm g ws =>
      String.eqb f g &&
      (fix go (vs ws : list value) : bool :=
         match vs, ws with
         | [], [] => true
         | a :: vs', b :: ws' => value_eqb a b && go vs' ws'
         | _, _ => false
         end) vs ws
  | VLit a, VLit b => literal_eqb a b
  | _, _ => false
  end.

Lemma value_eqb_spec : forall v w, value_eqb v w = true <-> v = w.
Proof.
  induction v as [f vs IH | l] using value_ind'; destruct w as [g ws | m]; simpl;
    split; intro H; try discriminate.
  - apply andb_prop in H as [Hf H]. apply String.eqb_eq in Hf; subst g.
    f_equal. revert ws H. induction IH as [| a vs' Ha _ IHvs]; intros [| b ws'] H;
      try discriminate; auto.
    apply andb_prop in H as [H1 H2]. apply Ha in H1; subst. f_equal. auto.
  - inversion H; subst. rewrite String.eqb_refl; simpl.
    clear H. induction IH as [| a vs' Ha _ IHvs]; auto.
    rewrite (proj2 (Ha a) eq_refl). simpl. exact IHvs.
  - apply literal_eqb_spec in H; congruence.
  - inversion H; apply literal_eqb_spec; reflexivity.
Qed.

Lemma value_eqb_refl : forall v, value_eqb v v = true.
Proof. intro v; apply value_eqb_spec; reflexivity. Qed.

Lemma value_eq_dec : forall v w : value, {v = w} + {v <> w}.
Proof.
  intros v w. destruct (value_eqb v w) eqn:E.
  - left; apply value_eqb_spec; exact E.
  - right; intro H; apply value_eqb_spec in H; congruence.
Defined.

(** Size of a value: the number of term and literal nodes. *)
Fixpoint vsize (v : value) : nat :=
  match v with
  | VTerm _ vs => S (fold_right (fun w n => vsize w + n) 0 vs)
  | VLit _ => 1
  end.

(** ** Substitutions *)

(** A substitution is an association list; the first binding of a name wins.
    Inclusion [subst_le] is extensional. *)
Definition subst := list (string * value).

Fixpoint lookup (s : subst) (x : string) : option value :=
  match s with
  | [] => None
  | (y, v) :: s' => if String.eqb x y then Some v else lookup s' x
  end.

Definition update (s : subst) (x : string) (v : value) : subst := (x, v) :: s.

Definition remove (s : subst) (x : string) : subst :=
  filter (fun b => negb (String.eqb x (fst b))) s.

(** [restore s x o]: put [x] back as it was ([o] is its old binding). *)
Definition restore (s : subst) (x : string) (o : option value) : subst :=
  match o with
  | Some v => update s x v
  | None => remove s x
  end.

Definition subst_le (s t : subst) : Prop :=
  forall x v, lookup s x = Some v -> lookup t x = Some v.

Definition bound (s : subst) (x : string) : bool :=
  match lookup s x with Some _ => true | None => false end.

(** ** Guards: a small closed language (atoms are variables or literals) *)

Inductive atom : Type :=
  | AVar (x : string)
  | ALit (l : literal).

Inductive guard : Type :=
  | GTrue
  | GFalse
  | GEq (a b : atom)
  | GNeq (a b : atom)
  | GNot (g : guard)
  | GAnd (g h : guard)
  | GOr (g h : guard).

Definition afv (a : atom) : list string :=
  match a with AVar x => [x] | ALit _ => [] end.

Fixpoint gfv (g : guard) : list string :=
  match g with
  | GTrue | GFalse => []
  | GEq a b | GNeq a b => afv a ++ afv b
  | GNot g => gfv g
  | GAnd g h | GOr g h => gfv g ++ gfv h
  end.

Definition eval_atom (s : subst) (a : atom) : option value :=
  match a with AVar x => lookup s x | ALit l => Some (VLit l) end.

Definition eq_atoms (s : subst) (a b : atom) : bool :=
  match eval_atom s a, eval_atom s b with
  | Some v, Some w => value_eqb v w
  | _, _ => false
  end.

Fixpoint geval (s : subst) (g : guard) : bool :=
  match g with
  | GTrue => true
  | GFalse => false
  | GEq a b => eq_atoms s a b
  | GNeq a b => negb (eq_atoms s a b)
  | GNot g => negb (geval s g)
  | GAnd g h => geval s g && geval s h
  | GOr g h => geval s g || geval s h
  end.

(** [⟦g⟧σ]: false when [g] reads a variable that [σ] leaves unbound. *)
Definition eval_guard (s : subst) (g : guard) : bool :=
  forallb (bound s) (gfv g) && geval s g.

(** ** Patterns and programs (§2) *)

Inductive pat : Type :=
  | PWild                                        (* _ *)
  | PVar (x : string)                            (* x *)
  | PLit (l : literal)                           (* l *)
  | POp (f : string) (ps : list pat)             (* f(p1..pn) *)
  | POpVar (x : string) (ps : list pat)          (* x(p1..pn) *)
  | PAlt (p1 p2 : pat)                           (* p1 | p2 *)
  | PExists (x : string) (p : pat)               (* ∃x. p *)
  | PCall (P : string) (xs : list string)        (* P(x1..xn) *)
  | PGuard (p : pat) (g : guard)                 (* p ? g *)
  | PThen (p : pat) (x : string) (q : pat)       (* p ; x ≍ q *)
  | PFail.                                       (* ⊥ *)

(** Induction over patterns, with the nested argument lists. *)
Section PatInd.
  Variable P : pat -> Prop.
  Hypothesis HWild : P PWild.
  Hypothesis HVar : forall x, P (PVar x).
  Hypothesis HLit : forall l, P (PLit l).
  Hypothesis HOp : forall f ps, Forall P ps -> P (POp f ps).
  Hypothesis HOpVar : forall x ps, Forall P ps -> P (POpVar x ps).
  Hypothesis HAlt : forall p1 p2, P p1 -> P p2 -> P (PAlt p1 p2).
  Hypothesis HExists : forall x p, P p -> P (PExists x p).
  Hypothesis HCall : forall f xs, P (PCall f xs).
  Hypothesis HGuard : forall p g, P p -> P (PGuard p g).
  Hypothesis HThen : forall p x q, P p -> P q -> P (PThen p x q).
  Hypothesis HFail : P PFail.

  Fixpoint pat_ind' (p : pat) : P p :=
    let fix go (ps : list pat) : Forall P ps :=
        match ps with
        | [] => Forall_nil P
        | q :: qs => Forall_cons q (pat_ind' q) (go qs)
        end in
    match p with
    | PWild => HWild
    | PVar x => HVar x
    | PLit l => HLit l
    | POp f ps => HOp f ps (go ps)
    | POpVar x ps => HOpVar x ps (go ps)
    | PAlt p1 p2 => HAlt p1 p2 (pat_ind' p1) (pat_ind' p2)
    | PExists x p => HExists x p (pat_ind' p)
    | PCall f xs => HCall f xs
    | PGuard p g => HGuard p g (pat_ind' p)
    | PThen p x q => HThen p x q (pat_ind' p) (pat_ind' q)
    | PFail => HFail
    end.
End PatInd.

(** Size of a pattern: the number of constructors (as [pypm.lang.syntax.size]). *)
Fixpoint psize (p : pat) : nat :=
  match p with
  | POp _ ps | POpVar _ ps => S (fold_right (fun q n => psize q + n) 0 ps)
  | PAlt p1 p2 => S (psize p1 + psize p2)
  | PExists _ p | PGuard p _ => S (psize p)
  | PThen p _ q => S (psize p + psize q)
  | _ => 1
  end.

(** A definition [P(y1..yn) := body] and a program Δ. The first definition
    of a name is the one that counts. *)
Record definition : Type := mkdef { def_params : list string; def_body : pat }.

Definition program := list (string * definition).

Fixpoint lookup_def (D : program) (P : string) : option definition :=
  match D with
  | [] => None
  | (Q, d) :: D' => if String.eqb P Q then Some d else lookup_def D' P
  end.

Definition dsize (D : program) : nat :=
  fold_right (fun b n => psize (def_body (snd b)) + n) 0 D.
