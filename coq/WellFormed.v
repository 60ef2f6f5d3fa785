(** * Well-formedness (LANGUAGE.md §5): a relation and a decidable checker. *)

From Coq Require Import String ZArith List Bool Arith Lia.
From PyPM Require Import Syntax Semantics.
Import ListNotations.

(** ** Sets of names as lists *)

Definition mem (x : string) (l : list string) : bool := existsb (String.eqb x) l.

Lemma mem_In : forall x l, mem x l = true <-> In x l.
Proof.
  unfold mem; intros x l. rewrite existsb_exists. split.
  - intros (y & Hy & E). apply String.eqb_eq in E; subst; auto.
  - intros H. exists x; split; auto. apply String.eqb_refl.
Qed.

Definition inter (l1 l2 : list string) : list string := filter (fun x => mem x l2) l1.
Definition rem (x : string) (l : list string) : list string :=
  filter (fun y => negb (String.eqb x y)) l.

Lemma In_inter : forall x l1 l2, In x (inter l1 l2) <-> In x l1 /\ In x l2.
Proof. intros; unfold inter; rewrite filter_In, mem_In; tauto. Qed.

Lemma In_rem : forall x y l, In y (rem x l) <-> In y l /\ x <> y.
Proof.
  intros; unfold rem; rewrite filter_In, negb_true_iff, String.eqb_neq; tauto.
Qed.

Definition inclb (l1 l2 : list string) : bool := forallb (fun x => mem x l2) l1.

Lemma inclb_incl : forall l1 l2, inclb l1 l2 = true <-> incl l1 l2.
Proof.
  unfold inclb, incl; intros. rewrite forallb_forall. split; intros H x Hx;
    [apply mem_In | apply mem_In]; auto.
Qed.

Fixpoint nodupb (l : list string) : bool :=
  match l with
  | [] => true
  | x :: l' => negb (mem x l') && nodupb l'
  end.

Lemma nodupb_NoDup : forall l, nodupb l = true <-> NoDup l.
Proof.
  induction l as [| x l IH]; simpl.
  - split; auto using NoDup_nil.
  - rewrite andb_true_iff, negb_true_iff, IH. split.
    + intros [H1 H2]. constructor; auto. intro Hx. apply mem_In in Hx; congruence.
    + intros H; inversion H; subst. split; auto.
      destruct (mem x l) eqn:E; auto. apply mem_In in E; contradiction.
Qed.

(** ** Scoping: every variable is a parameter or a local; no unused locals *)

(** The free variables of a pattern (∃-bound names removed within their scope). *)
Fixpoint pfv (p : pat) : list string :=
  let fix pfv_list (ps : list pat) : list string :=
      match ps with [] => [] | q :: qs => pfv q ++ pfv_list qs end in
  match p with
  | PWild | PLit _ | PFail => []
  | PVar x => [x]
  | POp _ ps => pfv_list ps
  | POpVar x ps => x :: pfv_list ps
  | PAlt p1 p2 => pfv p1 ++ pfv p2
  | PExists x p => rem x (pfv p)
  | PCall _ xs => xs
  | PGuard p g => pfv p ++ gfv g
  | PThen p x q => pfv p ++ x :: pfv q
  end.

Fixpoint locals_used (p : pat) : bool :=
  let fix locals_used_list (ps : list pat) : bool :=
      match ps with [] => true | q :: qs => locals_used q && locals_used_list qs end in
  match p with
  | POp _ ps | POpVar _ ps => locals_used_list ps
  | PAlt p1 p2 | PThen p1 _ p2 => locals_used p1 && locals_used p2
  | PExists x p => mem x (pfv p) && locals_used p
  | PGuard p _ => locals_used p
  | _ => true
  end.

(** Every [∃x. p] uses x in p. *)
Inductive used_locals : pat -> Prop :=
  | UL_Wild : used_locals PWild
  | UL_Var : forall x, used_locals (PVar x)
  | UL_Lit : forall l, used_locals (PLit l)
  | UL_Op : forall f ps, Forall used_locals ps -> used_locals (POp f ps)
  | UL_OpVar : forall x ps, Forall used_locals ps -> used_locals (POpVar x ps)
  | UL_Alt : forall p1 p2, used_locals p1 -> used_locals p2 -> used_locals (PAlt p1 p2)
  | UL_Exists : forall x p, In x (pfv p) -> used_locals p -> used_locals (PExists x p)
  | UL_Call : forall P xs, used_locals (PCall P xs)
  | UL_Guard : forall p g, used_locals p -> used_locals (PGuard p g)
  | UL_Then : forall p x q, used_locals p -> used_locals q -> used_locals (PThen p x q)
  | UL_Fail : used_locals PFail.

Lemma locals_used_list_eq : forall ps,
  (fix locals_used_list (ps : list pat) : bool :=
      match ps with [] => true | q :: qs => locals_used q && locals_used_list qs end) ps =
  forallb locals_used ps.
Proof. induction ps; simpl; congruence. Qed.

Lemma locals_used_iff : forall p, locals_used p = true <-> used_locals p.
Proof.
  assert (Hl : forall ps, Forall (fun p => locals_used p = true <-> used_locals p) ps ->
            (forallb locals_used ps = true <-> Forall used_locals ps)).
  { induction 1 as [| p ps Hp _ IH]; simpl; [split; auto |].
    rewrite andb_true_iff, Hp, IH. split; [intros [H1 H2]; constructor; auto |].
    intros H; inversion H; auto. }
  induction p as [| x | l | f ps IH | x ps IH | p1 p2 IH1 IH2 | x p IH | P xs
                  | p g IH | p x q IH IHq | ] using pat_ind'; simpl;
    rewrite ?locals_used_list_eq; split; intro H; try (constructor; fail); auto.
  - constructor. apply Hl; auto.
  - inversion H; subst. apply Hl; auto.
  - constructor. apply Hl; auto.
  - inversion H; subst. apply Hl; auto.
  - apply andb_true_iff in H as [H1 H2]. constructor; [apply IH1 | apply IH2]; auto.
  - inversion H; subst. apply andb_true_iff. split; [apply IH1 | apply IH2]; auto.
  - apply andb_true_iff in H as [H1 H2]. apply mem_In in H1. constructor; auto. apply IH; auto.
  - inversion H; subst. apply andb_true_iff. split; [apply mem_In; auto | apply IH; auto].
  - constructor. apply IH; auto.
  - inversion H; subst. apply IH; auto.
  - apply andb_true_iff in H as [H1 H2]. constructor; [apply IH | apply IHq]; auto.
  - inversion H; subst. apply andb_true_iff. split; [apply IH | apply IHq]; auto.
Qed.

Definition scoped (d : definition) : Prop :=
  incl (pfv (def_body d)) (def_params d) /\ used_locals (def_body d).

Definition scopedb (d : definition) : bool :=
  inclb (pfv (def_body d)) (def_params d) && locals_used (def_body d).

Lemma scopedb_scoped : forall d, scopedb d = true <-> scoped d.
Proof.
  intros d. unfold scopedb, scoped. rewrite andb_true_iff, inclb_incl, locals_used_iff. tauto.
Qed.

(** ** The relation *)

Section WF.
Variable D : program.

(** [bnd P]: the parameters of [P] that its body always binds (§5 computes
    it as a greatest fixed point; see [infer_binds] below). *)
Variable bnd : string -> list string.

(** The arguments that a call [P(x̄)] binds: those in the positions of [bnd P]. *)
Definition call_binds (P : string) (xs : list string) : list string :=
  match lookup_def D P with
  | Some d => map fst (filter (fun xy => mem (snd xy) (bnd P)) (combine xs (def_params d)))
  | None => []
  end.

(** [wf B p B']: [p] is well formed when the variables [B] are bound before
    it, and [B'] are bound after it. *)
Inductive wf : list string -> pat -> list string -> Prop :=
  | WF_Wild : forall B, wf B PWild B
  | WF_Var : forall B x, wf B (PVar x) (x :: B)
  | WF_Lit : forall B l, wf B (PLit l) B
  | WF_Op : forall B f ps B', wf_args B ps B' -> wf B (POp f ps) B'
  | WF_OpVar : forall B x ps B', wf_args (x :: B) ps B' -> wf B (POpVar x ps) B'
  | WF_Alt : forall B p1 p2 B1 B2,
      wf B p1 B1 -> wf B p2 B2 -> wf B (PAlt p1 p2) (inter B1 B2)
  | WF_Exists : forall B x p B1,
      wf (rem x B) p B1 ->
      wf B (PExists x p) (if mem x B then x :: rem x B1 else rem x B1)
  | WF_Call : forall B P xs d,
      lookup_def D P = Some d ->
      length xs = length (def_params d) ->
      wf B (PCall P xs) (call_binds P xs ++ B)
  | WF_Guard : forall B p g B1,
      wf B p B1 -> incl (gfv g) B1 -> wf B (PGuard p g) B1
  | WF_Then : forall B p x q B1 B2,
      wf B p B1 -> In x B1 -> wf B1 q B2 -> wf B (PThen p x q) B2
  | WF_Fail : forall B, wf B PFail B
with wf_args : list string -> list pat -> list string -> Prop :=
  | WFA_Nil : forall B, wf_args B [] B
  | WFA_Cons : forall B p ps B1 B2,
      wf B p B1 -> wf_args B1 ps B2 -> wf_args B (p :: ps) B2.

Scheme wf_mut := Induction for wf Sort Prop
  with wf_args_mut := Induction for wf_args Sort Prop.

(** A definition is well formed when its parameters are distinct, its body is
    well formed from B = ∅, and the body binds every parameter in [bnd P]. *)
Definition wf_def (P : string) (d : definition) : Prop :=
  NoDup (def_params d) /\ incl (bnd P) (def_params d) /\
  exists B', wf [] (def_body d) B' /\ incl (bnd P) B'.

(** A program: distinct names (a Python program is a dict), well-formed and
    scoped definitions. *)
Definition wf_program : Prop :=
  NoDup (map fst D) /\ Forall (fun b => wf_def (fst b) (snd b)) D /\ Forall (fun b => scoped (snd b)) D.

(** ** The checker *)

Fixpoint check_args (c : list string -> pat -> option (list string))
         (B : list string) (ps : list pat) : option (list string) :=
  match ps with
  | [] => Some B
  | p :: ps' => match c B p with Some B1 => check_args c B1 ps' | None => None end
  end.

Fixpoint check (B : list string) (p : pat) {struct p} : option (list string) :=
  let fix check_list (B : list string) (ps : list pat) : option (list string) :=
      match ps with
      | [] => Some B
      | p :: ps' => match check B p with Some B1 => check_list B1 ps' | None => None end
      end in
  match p with
  | PWild | PLit _ | PFail => Some B
  | PVar x => Some (x :: B)
  | POp _ ps => check_list B ps
  | POpVar x ps => check_list (x :: B) ps
  | PAlt p1 p2 =>
      match check B p1, check B p2 with
      | Some B1, Some B2 => Some (inter B1 B2)
      | _, _ => None
      end
  | PExists x p =>
      match check (rem x B) p with
      | Some B1 => Some (if mem x B then x :: rem x B1 else rem x B1)
      | None => None
      end
  | PCall P xs =>
      match lookup_def D P with
      | Some d => if length xs =? length (def_params d) then Some (call_binds P xs ++ B) else None
      | None => None
      end
  | PGuard p g =>
      match check B p with
      | Some B1 => if inclb (gfv g) B1 then Some B1 else None
      | None => None
      end
  | PThen p x q =>
      match check B p with
      | Some B1 => if mem x B1 then check B1 q else None
      | None => None
      end
  end.

Lemma check_list_eq : forall B ps,
  (fix check_list (B : list string) (ps : list pat) : option (list string) :=
      match ps with
      | [] => Some B
      | p :: ps' => match check B p with Some B1 => check_list B1 ps' | None => None end
      end) B ps = check_args check B ps.
Proof.
  intros B ps; revert B; induction ps as [| p ps IH]; intro B; simpl; auto.
  destruct (check B p); auto.
Qed.

Lemma check_args_wf : forall ps,
  Forall (fun p => forall B B', check B p = Some B' <-> wf B p B') ps ->
  forall B B', check_args check B ps = Some B' <-> wf_args B ps B'.
Proof.
  induction 1 as [| p ps Hp _ IH]; intros B B'; simpl; split; intro H.
  - inversion H; constructor.
  - inversion H; reflexivity.
  - destruct (check B p) as [B1|] eqn:E; try discriminate.
    econstructor; [apply Hp; eauto | apply IH; auto].
  - inversion H; subst. apply Hp in H3. rewrite H3. apply IH; auto.
Qed.

Lemma check_wf : forall p B B', check B p = Some B' <-> wf B p B'.
Proof.
  induction p as [| x | l | f ps IH | x ps IH | p1 p2 IH1 IH2 | x p IH | P xs
                  | p g IH | p x q IH IHq | ] using pat_ind'; intros B B'; simpl;
    rewrite ?check_list_eq.
  all: split; [intro H | intro H; inversion H; subst].
  - inversion H; constructor.
  - reflexivity.
  - inversion H; constructor.
  - reflexivity.
  - inversion H; constructor.
  - reflexivity.
  - constructor. apply check_args_wf; auto.
  - apply check_args_wf; auto.
  - constructor. apply check_args_wf; auto.
  - apply check_args_wf; auto.
  - destruct (check B p1) as [B1|] eqn:E1; try discriminate.
    destruct (check B p2) as [B2|] eqn:E2; try discriminate.
    inversion H; subst. constructor; [apply IH1 | apply IH2]; auto.
  - match goal with H1 : wf _ p1 _, H2 : wf _ p2 _ |- _ =>
      apply IH1 in H1; apply IH2 in H2; rewrite H1, H2 end. reflexivity.
  - destruct (check (rem x B) p) as [B1|] eqn:E; try discriminate.
    inversion H; subst. constructor. apply IH; auto.
  - match goal with H1 : wf _ p _ |- _ => apply IH in H1; rewrite H1 end. reflexivity.
  - destruct (lookup_def D P) as [d|] eqn:Ed; try discriminate.
    destruct (length xs =? length (def_params d)) eqn:El; try discriminate.
    inversion H; subst. apply Nat.eqb_eq in El. econstructor; eauto.
  - match goal with H1 : lookup_def _ _ = _, H2 : length _ = _ |- _ => rewrite H1, H2 end.
    rewrite Nat.eqb_refl. reflexivity.
  - destruct (check B p) as [B1|] eqn:E; try discriminate.
    destruct (inclb (gfv g) B1) eqn:Ei; try discriminate.
    inversion H; subst. constructor; [apply IH; auto | apply inclb_incl; auto].
  - match goal with H1 : wf _ p _, H2 : incl _ _ |- _ =>
      apply IH in H1; rewrite H1; apply inclb_incl in H2; rewrite H2 end. reflexivity.
  - destruct (check B p) as [B1|] eqn:E; try discriminate.
    destruct (mem x B1) eqn:Em; try discriminate.
    econstructor; [apply IH; eauto | apply mem_In; auto | apply IHq; auto].
  - match goal with H1 : wf _ p _, H2 : In _ _ |- _ =>
      apply IH in H1; rewrite H1; apply mem_In in H2; rewrite H2 end. apply IHq. auto.
  - inversion H; constructor.
  - reflexivity.
Qed.

Definition check_def (P : string) (d : definition) : bool :=
  nodupb (def_params d) && inclb (bnd P) (def_params d) &&
  match check [] (def_body d) with
  | Some B' => inclb (bnd P) B'
  | None => false
  end.

Definition check_program_with : bool :=
  nodupb (map fst D) && forallb (fun b => check_def (fst b) (snd b)) D &&
  forallb (fun b => scopedb (snd b)) D.

Lemma check_def_wf : forall P d, check_def P d = true <-> wf_def P d.
Proof.
  intros P d. unfold check_def, wf_def.
  rewrite !andb_true_iff, nodupb_NoDup, inclb_incl. split.
  - intros [[H1 H2] H3]. split; auto. split; auto.
    destruct (check [] (def_body d)) as [B'|] eqn:E; try discriminate.
    exists B'. split; [apply check_wf; auto | apply inclb_incl; auto].
  - intros (H1 & H2 & B' & H3 & H4). split; auto.
    apply check_wf in H3. rewrite H3. apply inclb_incl; auto.
Qed.

(** The checker agrees with the relation. *)
Theorem check_program_with_wf : check_program_with = true <-> wf_program.
Proof.
  unfold check_program_with, wf_program.
  rewrite !andb_true_iff, nodupb_NoDup, !forallb_forall, !Forall_forall.
  split.
  - intros [[H1 H2] H3]. split; auto. split; intros b Hb.
    + apply check_def_wf; auto.
    + apply scopedb_scoped; auto.
  - intros (H1 & H2 & H3). split; [split; auto |]; intros b Hb.
    + apply check_def_wf; auto.
    + apply scopedb_scoped; auto.
Qed.

End WF.

Lemma lookup_def_In : forall D P d, lookup_def D P = Some d -> In (P, d) D.
Proof.
  induction D as [| [Q e] D IH]; simpl; intros P d H; try discriminate.
  destruct (String.eqb P Q) eqn:E.
  - apply String.eqb_eq in E; inversion H; subst; auto.
  - right; auto.
Qed.

Lemma wf_program_lookup : forall D bnd P d,
  wf_program D bnd -> lookup_def D P = Some d -> wf_def D bnd P d.
Proof.
  unfold wf_program; intros D bnd P d (_ & H & _) Hd. rewrite Forall_forall in H.
  apply (H (P, d)). apply lookup_def_In; auto.
Qed.

(** ** Inferring the table [bnd] (§5: a greatest fixed point, from "binds
    every parameter"), and the checker of §5 *)

Definition binds_step (D : program) (bnd : string -> list string) (P : string) : list string :=
  match lookup_def D P with
  | Some d =>
      match check D bnd [] (def_body d) with
      | Some B' => filter (fun y => mem y B') (def_params d)
      | None => []
      end
  | None => []
  end.

(** Tables by name, so that each round is computed once (a table, not a closure
    that would recompute the rounds before it at every use). *)
Fixpoint tbl_get {A : Type} (default : A) (t : list (string * A)) (P : string) : A :=
  match t with
  | [] => default
  | (Q, a) :: t' => if String.eqb P Q then a else tbl_get default t' P
  end.

Fixpoint binds_table (D : program) (k : nat) : list (string * list string) :=
  match k with
  | O => map (fun b => (fst b, def_params (snd b))) D
  | S k =>
      let t := binds_table D k in
      map (fun b => (fst b, binds_step D (tbl_get [] t) (fst b))) D
  end.

(** Every round either keeps the table or removes a parameter, so this many
    rounds reach the fixed point; [check_program] checks that it did. *)
Definition binds_rounds (D : program) : nat :=
  S (fold_right (fun b n => length (def_params (snd b)) + n) 0 D).

Definition infer_binds (D : program) : string -> list string :=
  tbl_get [] (binds_table D (binds_rounds D)).

Definition check_program (D : program) : bool :=
  let t := binds_table D (binds_rounds D) in check_program_with D (tbl_get [] t).

(** The check of a query pattern, from B = ∅. *)
Definition check_query (D : program) (p : pat) : bool :=
  let t := binds_table D (binds_rounds D) in
  match check D (tbl_get [] t) [] p with Some _ => true | None => false end.

Lemma check_query_some : forall D p,
  check_query D p = true -> exists B', check D (infer_binds D) [] p = Some B'.
Proof.
  unfold check_query, infer_binds; cbv zeta; intros D p H.
  destruct (check D _ [] p); [eauto | discriminate].
Qed.

Theorem check_program_sound : forall D,
  check_program D = true -> wf_program D (infer_binds D).
Proof. intros D H. apply check_program_with_wf. exact H. Qed.

(** ** The checker accepts every program that is well formed for some table *)

Section Gfp.
Variable D : program.

Definition below (b1 b2 : string -> list string) : Prop :=
  forall P d, lookup_def D P = Some d -> incl (b1 P) (b2 P).

Lemma call_binds_mono : forall b1 b2 P xs,
  below b1 b2 -> incl (call_binds D b1 P xs) (call_binds D b2 P xs).
Proof.
  unfold call_binds; intros b1 b2 P xs H. destruct (lookup_def D P) as [d|] eqn:Ed; [| intros y []].
  intros y Hy. apply in_map_iff in Hy as ([x z] & E & Hy). apply in_map_iff. exists (x, z).
  split; auto. apply filter_In in Hy as [Hy Hz]. apply filter_In. split; auto.
  simpl in *. apply mem_In. apply (H P d Ed). apply mem_In; auto.
Qed.

(** [wf] is monotone in the table and in the bound variables. *)
Lemma wf_mono : forall b1 b2, below b1 b2 ->
  forall B1 p B1', wf D b1 B1 p B1' ->
  forall B2, incl B1 B2 -> exists B2', wf D b2 B2 p B2' /\ incl B1' B2'.
Proof.
  intros b1 b2 Hb.
  apply (wf_mut D b1
    (fun B1 p B1' _ => forall B2, incl B1 B2 -> exists B2', wf D b2 B2 p B2' /\ incl B1' B2')
    (fun B1 ps B1' _ => forall B2, incl B1 B2 -> exists B2', wf_args D b2 B2 ps B2' /\ incl B1' B2')).
  - intros B C HB. exists C; split; [constructor | auto].
  - intros B x C HB. exists (x :: C); split; [constructor |].
    intros y [<- | Hy]; [left | right]; auto.
  - intros B l C HB. exists C; split; [constructor | auto].
  - intros B f ps B' _ IH C HB. destruct (IH C HB) as (C' & H1 & H2).
    exists C'; split; [constructor |]; auto.
  - intros B x ps B' _ IH C HB. destruct (IH (x :: C)) as (C' & H1 & H2).
    + intros y [<- | Hy]; [left | right]; auto.
    + exists C'; split; [constructor |]; auto.
  - intros B p1 p2 B1 B2 _ IH1 _ IH2 C HB.
    destruct (IH1 C HB) as (C1 & H3 & H4). destruct (IH2 C HB) as (C2 & H5 & H6).
    exists (inter C1 C2). split; [constructor; auto |].
    intros y Hy. apply In_inter in Hy as [Hy1 Hy2]. apply In_inter; auto.
  - intros B x p B1 _ IH C HB. destruct (IH (rem x C)) as (C1 & H1 & H2).
    { intros y Hy. apply In_rem in Hy as [Hy Hxy]. apply In_rem; auto. }
    exists (if mem x C then x :: rem x C1 else rem x C1). split; [constructor; auto |].
    assert (Hr : incl (rem x B1) (rem x C1)).
    { intros y Hy. apply In_rem in Hy as [Hy Hxy]. apply In_rem; auto. }
    destruct (mem x B) eqn:E1, (mem x C) eqn:E2.
    + intros y [<- | Hy]; [left | right]; auto.
    + apply mem_In in E1. apply HB in E1. apply mem_In in E1. congruence.
    + intros y Hy; right; auto.
    + auto.
  - intros B P xs d Hd Hlen C HB. exists (call_binds D b2 P xs ++ C).
    split; [econstructor; eauto |].
    intros y Hy. apply in_app_or in Hy as [Hy | Hy]; apply in_or_app; [left | right]; auto.
    eapply call_binds_mono; eauto.
  - intros B p g B1 _ IH Hg C HB. destruct (IH C HB) as (C1 & H1 & H2).
    exists C1. split; [constructor; auto |]; auto. intros y Hy; auto.
  - intros B p x q B1 B2 _ IH1 Hx _ IH2 C HB.
    destruct (IH1 C HB) as (C1 & H3 & H4). destruct (IH2 C1 H4) as (C2 & H5 & H6).
    exists C2. split; [econstructor; eauto |]; auto.
  - intros B C HB. exists C; split; [constructor | auto].
  - intros B C HB. exists C; split; [constructor | auto].
  - intros B p ps B1 B2 _ IH _ IHa C HB.
    destruct (IH C HB) as (C1 & H3 & H4). destruct (IHa C1 H4) as (C2 & H5 & H6).
    exists C2. split; [econstructor; eauto | auto].
Qed.

Lemma check_mono : forall b1 b2 B p B1, below b1 b2 ->
  check D b1 B p = Some B1 -> exists B2, check D b2 B p = Some B2 /\ incl B1 B2.
Proof.
  intros b1 b2 B p B1 Hb H. apply check_wf in H.
  destruct (wf_mono b1 b2 Hb B p B1 H B (incl_refl B)) as (B2 & H1 & H2).
  exists B2. split; auto. apply check_wf; auto.
Qed.

Lemma tbl_get_map : forall {A : Type} (dflt : A) (F : string -> definition -> A) P,
  tbl_get dflt (map (fun b => (fst b, F (fst b) (snd b))) D) P =
  match lookup_def D P with Some d => F P d | None => dflt end.
Proof.
  intros A dflt F P. induction D as [| [Q e] D' IH]; simpl; auto.
  destruct (String.eqb P Q) eqn:E; auto. apply String.eqb_eq in E; subst; auto.
Qed.

Definition tab (k : nat) : string -> list string := tbl_get [] (binds_table D k).

Lemma tab_0 : forall P,
  tab 0 P = match lookup_def D P with Some d => def_params d | None => [] end.
Proof.
  intros P. unfold tab. simpl.
  exact (tbl_get_map [] (fun _ d => def_params d) P).
Qed.

Lemma tab_S : forall k P, tab (S k) P = binds_step D (tab k) P.
Proof.
  intros k P. unfold tab at 1. simpl.
  pose proof (tbl_get_map [] (fun Q _ => binds_step D (tab k) Q) P) as E.
  simpl in E. unfold tab in E |- *. rewrite E.
  unfold binds_step. destruct (lookup_def D P); reflexivity.
Qed.

(** The rounds start at every parameter and only shrink. *)
Lemma tab_shrinks : forall k, below (tab (S k)) (tab k).
Proof.
  induction k as [| k IH]; intros P d Hd; rewrite tab_S; unfold binds_step; rewrite Hd.
  - rewrite tab_0, Hd. destruct (check D (tab 0) [] (def_body d)); [| intros y []].
    intros y Hy. apply filter_In in Hy; tauto.
  - rewrite tab_S. unfold binds_step. rewrite Hd.
    destruct (check D (tab (S k)) [] (def_body d)) as [B2|] eqn:E2; [| intros y []].
    destruct (check_mono _ _ _ _ _ IH E2) as (B1 & E1 & Hi). rewrite E1.
    intros y Hy. apply filter_In in Hy as [Hy Hm]. apply filter_In. split; auto.
    apply mem_In. apply Hi. apply mem_In; auto.
Qed.

(** Every table for which the program is well formed is below every round. *)
Lemma tab_above : forall bnd, wf_program D bnd -> forall k, below bnd (tab k).
Proof.
  intros bnd HD k. induction k as [| k IH]; intros P d Hd.
  - rewrite tab_0, Hd. apply (wf_program_lookup D bnd P d HD Hd).
  - destruct (wf_program_lookup D bnd P d HD Hd) as (_ & Hp & B & Hw & Hi).
    apply check_wf in Hw. destruct (check_mono _ _ _ _ _ IH Hw) as (B' & E & Hi').
    rewrite tab_S. unfold binds_step. rewrite Hd, E.
    intros y Hy. apply filter_In. split; auto. apply mem_In; auto.
Qed.

(** Counting: the rounds are filters of the parameter lists that only shrink. *)
Lemma filter_sub_length : forall (p q : string -> bool) l,
  (forall y, In y l -> p y = true -> q y = true) ->
  length (filter p l) <= length (filter q l) /\
  (filter p l <> filter q l -> length (filter p l) < length (filter q l)).
Proof.
  intros p q l H. induction l as [| a l IH]; simpl; [split; [auto | congruence] |].
  specialize (IH (fun y Hy => H y (or_intror Hy))). destruct IH as [IH1 IH2].
  destruct (p a) eqn:Ep, (q a) eqn:Eq; simpl.
  - split; [lia |]. intros Hne. assert (filter p l <> filter q l) by congruence. specialize (IH2 H0). lia.
  - rewrite (H a (or_introl eq_refl) Ep) in Eq; discriminate.
  - split; [lia |]. intros _. lia.
  - auto.
Qed.

Lemma tab_filter : forall k P d, lookup_def D P = Some d ->
  exists q, tab k P = filter q (def_params d).
Proof.
  intros [| k] P d Hd.
  - exists (fun _ => true). rewrite tab_0, Hd. induction (def_params d); simpl; congruence.
  - rewrite tab_S. unfold binds_step. rewrite Hd.
    destruct (check D (tab k) [] (def_body d)) as [B|].
    + eauto.
    + exists (fun _ => false). induction (def_params d); simpl; auto.
Qed.

Lemma tab_step_length : forall k P d, lookup_def D P = Some d ->
  length (tab (S k) P) <= length (tab k P) /\
  (tab (S k) P <> tab k P -> length (tab (S k) P) < length (tab k P)).
Proof.
  intros k P d Hd.
  destruct (tab_filter (S k) P d Hd) as (q1 & E1), (tab_filter k P d Hd) as (q0 & E0).
  rewrite E1, E0. apply filter_sub_length. intros y Hy Hq.
  assert (In y (tab (S k) P)) by (rewrite E1; apply filter_In; auto).
  apply (tab_shrinks k P d Hd) in H. rewrite E0 in H. apply filter_In in H; tauto.
Qed.

Lemma call_binds_ext : forall f g P xs,
  (forall Q d, lookup_def D Q = Some d -> f Q = g Q) -> call_binds D f P xs = call_binds D g P xs.
Proof.
  unfold call_binds; intros f g P xs H. destruct (lookup_def D P) as [d|] eqn:Ed; auto.
  rewrite (H P d Ed). reflexivity.
Qed.

Lemma check_ext : forall f g,
  (forall Q d, lookup_def D Q = Some d -> f Q = g Q) -> forall p B, check D f B p = check D g B p.
Proof.
  intros f g H.
  assert (Hargs : forall ps, Forall (fun p => forall B, check D f B p = check D g B p) ps ->
            forall B, check_args (check D f) B ps = check_args (check D g) B ps).
  { induction 1 as [| p ps Hp _ IH]; intros B; simpl; auto. rewrite Hp.
    destruct (check D g B p); auto. }
  induction p as [| x | l | f0 ps IH | x ps IH | p1 p2 IH1 IH2 | x p IH | P xs
                  | p g0 IH | p x q IH IHq | ] using pat_ind'; intros B; simpl;
    rewrite ?check_list_eq; auto.
  - rewrite IH1, IH2; auto.
  - rewrite IH; auto.
  - rewrite (call_binds_ext f g P xs H). auto.
  - rewrite IH; auto.
  - rewrite IH. destruct (check D g B p); auto. destruct (mem x l); auto.
Qed.

Lemma In_defined : forall P d, In (P, d) D -> exists d', lookup_def D P = Some d'.
Proof.
  intros P d H. induction D as [| [Q e] D' IH]; simpl in *; [contradiction |].
  destruct (String.eqb P Q) eqn:E; eauto. destruct H as [H | H]; auto.
  inversion H; subst. rewrite String.eqb_refl in E. discriminate.
Qed.

Definition stableb (k : nat) : bool :=
  forallb (fun b => if list_eq_dec String.string_dec (tab (S k) (fst b)) (tab k (fst b))
                    then true else false) D.

Lemma stableb_true : forall k, stableb k = true ->
  forall P d, lookup_def D P = Some d -> tab (S k) P = tab k P.
Proof.
  unfold stableb; intros k H P d Hd. rewrite forallb_forall in H.
  specialize (H (P, d) (lookup_def_In D P d Hd)). simpl in H.
  destruct (list_eq_dec String.string_dec (tab (S k) P) (tab k P)); auto; discriminate.
Qed.

Lemma stableb_persists : forall k, stableb k = true -> stableb (S k) = true.
Proof.
  intros k H. unfold stableb. apply forallb_forall. intros [P d] Hin. simpl.
  destruct (In_defined P d Hin) as [d' Hd].
  assert (E : tab (S (S k)) P = tab (S k) P).
  { rewrite (tab_S (S k) P), (tab_S k P). unfold binds_step.
    destruct (lookup_def D P) as [e|]; auto.
    rewrite (check_ext (tab (S k)) (tab k) (stableb_true k H)). reflexivity. }
  rewrite E. destruct (list_eq_dec String.string_dec (tab (S k) P) (tab (S k) P)); congruence.
Qed.

Definition msum (L : program) (k : nat) : nat := fold_right (fun b n => length (tab k (fst b)) + n) 0 L.

Lemma msum_step : forall L k, incl L D ->
  msum L (S k) <= msum L k /\
  (forallb (fun b => if list_eq_dec String.string_dec (tab (S k) (fst b)) (tab k (fst b))
                     then true else false) L = false -> msum L (S k) < msum L k).
Proof.
  induction L as [| [P d] L IH]; intros k Hincl; simpl; [split; [auto | discriminate] |].
  destruct (IH k) as [IH1 IH2]; [intros b Hb; apply Hincl; right; auto |].
  destruct (In_defined P d (Hincl _ (or_introl eq_refl))) as [d' Hd].
  destruct (tab_step_length k P d' Hd) as [H1 H2].
  destruct (list_eq_dec String.string_dec (tab (S k) P) (tab k P)) as [E | E]; simpl.
  - split; [lia |]. intros Hf. specialize (IH2 Hf). lia.
  - split; [lia |]. intros _. specialize (H2 E). lia.
Qed.

Hypothesis Hnames : NoDup (map fst D).

Lemma lookup_def_nodup : forall P d, In (P, d) D -> lookup_def D P = Some d.
Proof.
  clear -Hnames. induction D as [| [Q e] D' IH]; simpl; intros P d H; [contradiction |].
  inversion Hnames; subst. destruct H as [E | H].
  - inversion E; subst. rewrite String.eqb_refl; auto.
  - destruct (String.eqb P Q) eqn:E.
    + apply String.eqb_eq in E; subst. exfalso. apply H2. apply in_map_iff. exists (Q, d); auto.
    + apply IH; auto.
Qed.

Lemma msum_0 : forall L, incl L D ->
  msum L 0 = fold_right (fun b n => length (def_params (snd b)) + n) 0 L.
Proof.
  induction L as [| [P d] L IH]; intros Hincl; simpl; auto.
  rewrite tab_0, (lookup_def_nodup P d (Hincl _ (or_introl eq_refl))).
  rewrite IH; auto. intros b Hb; apply Hincl; right; auto.
Qed.

(** The rounds reach the fixed point within [binds_rounds D]. *)
Lemma stable_at_rounds : stableb (binds_rounds D) = true.
Proof.
  destruct (stableb (binds_rounds D)) eqn:E; auto. exfalso.
  assert (Hnot : forall j, j <= binds_rounds D -> stableb j = false).
  { intros j Hj. destruct (stableb j) eqn:Ej; auto.
    assert (forall m, stableb (j + m) = true) as Hm.
    { induction m; [rewrite Nat.add_0_r; auto | rewrite Nat.add_succ_r; apply stableb_persists; auto]. }
    specialize (Hm (binds_rounds D - j)). replace (j + (binds_rounds D - j)) with (binds_rounds D) in Hm
      by lia. congruence. }
  assert (Hdec : forall j, j <= S (binds_rounds D) -> msum D j + j <= msum D 0).
  { induction j as [| j IH]; intros Hj; [lia |].
    destruct (msum_step D j (incl_refl D)) as [_ H2].
    specialize (H2 (Hnot j ltac:(lia))). specialize (IH ltac:(lia)). lia. }
  specialize (Hdec (S (binds_rounds D)) (le_n _)).
  rewrite (msum_0 D (incl_refl D)) in Hdec. unfold binds_rounds in Hdec. lia.
Qed.

(** The table of the last round is post-fixed, and above every table for
    which the program is well formed: the checker is complete. *)
Theorem check_program_complete : forall bnd, wf_program D bnd -> check_program D = true.
Proof.
  intros bnd HD. unfold check_program. cbv zeta. apply check_program_with_wf.
  fold (tab (binds_rounds D)).
  split; [auto | split; [| exact (proj2 (proj2 HD))]].
  apply Forall_forall. intros [P d] Hin. simpl.
  pose proof (lookup_def_nodup P d Hin) as Hd.
  destruct (wf_program_lookup D bnd P d HD Hd) as (Hnd & _ & Bb & Hw & _).
  apply check_wf in Hw.
  destruct (check_mono _ _ _ _ _ (tab_above bnd HD (binds_rounds D)) Hw) as (B' & E & _).
  split; [exact Hnd |]. split.
  - destruct (tab_filter (binds_rounds D) P d Hd) as (q & Eq). rewrite Eq.
    intros y Hy. apply filter_In in Hy; tauto.
  - exists B'. split; [apply check_wf; exact E |].
    rewrite <- (stableb_true _ stable_at_rounds P d Hd). rewrite tab_S.
    unfold binds_step. rewrite Hd, E. intros y Hy. apply filter_In in Hy as [_ Hy]. apply mem_In; auto.
Qed.

End Gfp.

(** §5 as a checker agrees with its relation: [check_program] accepts exactly
    the programs that are well formed for some table of always-bound parameters
    (and then for the table it infers, the greatest one). *)
Theorem check_program_wf : forall D,
  check_program D = true <-> exists bnd, wf_program D bnd.
Proof.
  intros D. split.
  - intros H. exists (infer_binds D). apply check_program_sound; auto.
  - intros [bnd H]. apply (check_program_complete D (proj1 H) bnd H).
Qed.
