(** * Well-formedness (LANGUAGE.md §5): a relation and a decidable checker. *)

From Coq Require Import String ZArith List Bool Arith.
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

(** A program: distinct names (a Python program is a dict), well-formed definitions. *)
Definition wf_program : Prop := NoDup (map fst D) /\ Forall (fun b => wf_def (fst b) (snd b)) D.

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
  nodupb (map fst D) && forallb (fun b => check_def (fst b) (snd b)) D.

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
  rewrite andb_true_iff, nodupb_NoDup, forallb_forall, Forall_forall.
  split; intros [H1 H2]; split; auto; intros b Hb; apply check_def_wf; auto.
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
  unfold wf_program; intros D bnd P d [_ H] Hd. rewrite Forall_forall in H.
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
