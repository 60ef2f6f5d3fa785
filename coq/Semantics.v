(** * Declarative semantics [σ ⊨ v : p] under Δ (LANGUAGE.md §3). *)

From Coq Require Import String ZArith List Bool.
From PyPM Require Import Syntax.
Import ListNotations.

(** ** Facts about substitutions *)

Lemma subst_le_refl : forall s, subst_le s s.
Proof. unfold subst_le; auto. Qed.

Lemma subst_le_trans : forall s t u, subst_le s t -> subst_le t u -> subst_le s u.
Proof. unfold subst_le; eauto. Qed.

Lemma lookup_update : forall s x v y,
  lookup (update s x v) y = if String.eqb y x then Some v else lookup s y.
Proof. reflexivity. Qed.

Lemma lookup_update_eq : forall s x v, lookup (update s x v) x = Some v.
Proof. intros; simpl; rewrite String.eqb_refl; reflexivity. Qed.

Lemma lookup_update_neq : forall s x v y, y <> x -> lookup (update s x v) y = lookup s y.
Proof. intros; simpl; apply String.eqb_neq in H; rewrite H; reflexivity. Qed.

Lemma lookup_remove : forall s x y,
  lookup (remove s x) y = if String.eqb y x then None else lookup s y.
Proof.
  induction s as [| [z w] s IH]; intros x y; simpl.
  - destruct (String.eqb y x); reflexivity.
  - destruct (String.eqb x z) eqn:Exz; simpl.
    + apply String.eqb_eq in Exz; subst z. rewrite IH.
      destruct (String.eqb y x); reflexivity.
    + rewrite IH. destruct (String.eqb y z) eqn:Eyz; auto.
      apply String.eqb_eq in Eyz; subst z.
      destruct (String.eqb y x) eqn:Eyx; auto.
      apply String.eqb_eq in Eyx; subst. rewrite String.eqb_refl in Exz; discriminate.
Qed.

Lemma lookup_restore : forall s x o y,
  lookup (restore s x o) y = if String.eqb y x then o else lookup s y.
Proof.
  intros s x [v|] y; simpl restore.
  - apply lookup_update.
  - rewrite lookup_remove; destruct (String.eqb y x); reflexivity.
Qed.

Lemma subst_le_update : forall s x v,
  lookup s x = None -> subst_le s (update s x v).
Proof.
  unfold subst_le; intros s x v H y w Hy. rewrite lookup_update.
  destruct (String.eqb y x) eqn:E; auto. apply String.eqb_eq in E; subst; congruence.
Qed.

Lemma subst_le_update_both : forall s t x v,
  subst_le s t -> subst_le (update s x v) (update t x v).
Proof.
  unfold subst_le; intros s t x v H y w. rewrite !lookup_update.
  destruct (String.eqb y x); auto.
Qed.

Lemma subst_le_remove : forall s x, subst_le (remove s x) s.
Proof.
  unfold subst_le; intros s x y w. rewrite lookup_remove. destruct (String.eqb y x); congruence.
Qed.

Lemma bound_iff : forall s x, bound s x = true <-> exists v, lookup s x = Some v.
Proof.
  unfold bound; intros s x; destruct (lookup s x); split; intros H; eauto;
    try discriminate; destruct H; discriminate.
Qed.

(** ** Guards are local: [⟦g⟧σ] depends only on σ restricted to fv(g). *)

Lemma geval_local : forall g s t,
  (forall x, In x (gfv g) -> lookup s x = lookup t x) -> geval s g = geval t g.
Proof.
  assert (Ha : forall s t a b,
    (forall x, In x (afv a ++ afv b) -> lookup s x = lookup t x) ->
    eq_atoms s a b = eq_atoms t a b).
  { intros s t a b H. unfold eq_atoms.
    assert (E1 : eval_atom s a = eval_atom t a).
    { destruct a; simpl; auto. apply H; simpl; auto. }
    assert (E2 : eval_atom s b = eval_atom t b).
    { destruct b; simpl; auto. apply H. apply in_or_app; right; simpl; auto. }
    rewrite E1, E2; reflexivity. }
  induction g as [| | a b | a b | g IHg | g1 IHg1 g2 IHg2 | g1 IHg1 g2 IHg2];
    intros s t H; simpl in *; auto.
  - rewrite (Ha s t a b H); reflexivity.
  - rewrite (IHg s t H); reflexivity.
  - rewrite (IHg1 s t), (IHg2 s t); auto; intros; apply H; apply in_or_app; auto.
  - rewrite (IHg1 s t), (IHg2 s t); auto; intros; apply H; apply in_or_app; auto.
Qed.

Theorem guard_local : forall g s t,
  (forall x, In x (gfv g) -> lookup s x = lookup t x) -> eval_guard s g = eval_guard t g.
Proof.
  intros g s t H. unfold eval_guard. rewrite (geval_local g s t H). f_equal.
  induction (gfv g) as [| y ys IH]; simpl; auto.
  unfold bound at 1 3. rewrite (H y (or_introl eq_refl)).
  rewrite IH; auto. intros; apply H; simpl; auto.
Qed.

Lemma eval_guard_all_bound : forall s g x,
  eval_guard s g = true -> In x (gfv g) -> exists v, lookup s x = Some v.
Proof.
  unfold eval_guard; intros s g x H Hx. apply andb_prop in H as [H _].
  rewrite forallb_forall in H. apply bound_iff; auto.
Qed.

Lemma eval_guard_mono : forall s t g,
  subst_le s t -> eval_guard s g = true -> eval_guard t g = true.
Proof.
  intros s t g Hle H. rewrite <- H. symmetry. apply guard_local.
  intros x Hx. destruct (eval_guard_all_bound s g x H Hx) as [v Hv].
  rewrite Hv. symmetry. auto.
Qed.

(** ** The relation, one constructor per rule of §3 *)

(** The call rule works with a frame: the body is matched under its own
    substitution [t], and every parameter [y_i] that [t] binds must be bound to
    the same value by the argument [x_i] in σ. This is [body[ȳ := x̄]] with the
    locals renamed apart. *)
Definition frame_out (t s : subst) (xs ys : list string) : Prop :=
  Forall2 (fun x y => forall w, lookup t y = Some w -> lookup s x = Some w) xs ys.

Section Sem.
Variable D : program.

Inductive sem : subst -> value -> pat -> Prop :=
  | M_Wild : forall s v,
      sem s v PWild
  | M_Var : forall s x v,
      lookup s x = Some v ->
      sem s v (PVar x)
  | M_Lit : forall s l,
      sem s (VLit l) (PLit l)
  | M_Op : forall s f ps vs,
      sem_args s ps vs ->
      sem s (VTerm f vs) (POp f ps)
  | M_OpVar : forall s x f ps vs,
      lookup s x = Some (VLit (LStr f)) ->
      sem_args s ps vs ->
      sem s (VTerm f vs) (POpVar x ps)
  | M_AltL : forall s v p1 p2,
      sem s v p1 ->
      sem s v (PAlt p1 p2)
  | M_AltR : forall s v p1 p2,
      sem s v p2 ->
      sem s v (PAlt p1 p2)
  | M_Exists : forall s v x p u,
      sem (update s x u) v p ->
      sem s v (PExists x p)
  | M_Call : forall s v P xs d t,
      lookup_def D P = Some d ->
      sem t v (def_body d) ->
      frame_out t s xs (def_params d) ->
      sem s v (PCall P xs)
  | M_Guard : forall s v p g,
      sem s v p ->
      eval_guard s g = true ->
      sem s v (PGuard p g)
  | M_Then : forall s v p x w q,
      sem s v p ->
      lookup s x = Some w ->
      sem s w q ->
      sem s v (PThen p x q)

(** [sem_args σ [p1..pn] [v1..vm]]: n ≤ m and [σ ⊨ vi : pi] for i ≤ n. *)
with sem_args : subst -> list pat -> list value -> Prop :=
  | MA_Nil : forall s vs,
      sem_args s [] vs
  | MA_Cons : forall s p ps v vs,
      sem s v p ->
      sem_args s ps vs ->
      sem_args s (p :: ps) (v :: vs).

Scheme sem_mut := Induction for sem Sort Prop
  with sem_args_mut := Induction for sem_args Sort Prop.

Lemma sem_args_length : forall s ps vs, sem_args s ps vs -> length ps <= length vs.
Proof. induction 1; simpl; auto with arith. Qed.

Lemma frame_out_mono : forall t s s' xs ys,
  subst_le s s' -> frame_out t s xs ys -> frame_out t s' xs ys.
Proof.
  unfold frame_out; intros t s s' xs ys Hle H.
  induction H; constructor; auto.
Qed.

(** The declarative relation is monotone in σ. *)
Theorem sem_monotone : forall s v p, sem s v p -> forall t, subst_le s t -> sem t v p.
Proof.
  apply (sem_mut
    (fun s v p _ => forall t, subst_le s t -> sem t v p)
    (fun s ps vs _ => forall t, subst_le s t -> sem_args t ps vs));
    intros; try solve [econstructor; eauto].
  - eapply M_Exists. apply H. apply subst_le_update_both; auto.
  - eapply M_Call; eauto. eapply frame_out_mono; eauto.
  - apply M_Guard; auto. eapply eval_guard_mono; eauto.
Qed.

Lemma sem_args_monotone : forall s ps vs, sem_args s ps vs ->
  forall t, subst_le s t -> sem_args t ps vs.
Proof.
  apply (sem_args_mut
    (fun s v p _ => forall t, subst_le s t -> sem t v p)
    (fun s ps vs _ => forall t, subst_le s t -> sem_args t ps vs));
    intros; try solve [econstructor; eauto].
  - eapply M_Exists. apply H. apply subst_le_update_both; auto.
  - eapply M_Call; eauto. eapply frame_out_mono; eauto.
  - apply M_Guard; auto. eapply eval_guard_mono; eauto.
Qed.

End Sem.
