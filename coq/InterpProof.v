(** * The interpreter agrees with the declarative semantics (LANGUAGE.md §6). *)

From Coq Require Import String ZArith List Bool Arith Lia.
From PyPM Require Import Syntax Semantics Interp.
Import ListNotations.

(** ** Outcomes *)

Lemma flat_map_out_in : forall f l r s',
  flat_map_out f l = Ok r -> In s' r ->
  exists a ra, In a l /\ f a = Ok ra /\ In s' ra.
Proof.
  induction l as [| a l IH]; simpl; intros r s' H Hin.
  - inversion H; subst; contradiction.
  - destruct (f a) as [| ra] eqn:Ea; try discriminate.
    destruct (flat_map_out f l) as [| rl] eqn:El; try discriminate.
    inversion H; subst. apply in_app_or in Hin as [Hin | Hin].
    + exists a, ra; auto.
    + destruct (IH rl s' eq_refl Hin) as (b & rb & Hb & Eb & Hs). exists b, rb; auto.
Qed.

Lemma flat_map_out_ok : forall f l r a,
  flat_map_out f l = Ok r -> In a l ->
  exists ra, f a = Ok ra /\ (forall s', In s' ra -> In s' r).
Proof.
  induction l as [| b l IH]; simpl; intros r a H Hin; [contradiction |].
  destruct (f b) as [| rb] eqn:Eb; try discriminate.
  destruct (flat_map_out f l) as [| rl] eqn:El; try discriminate.
  inversion H; subst. destruct Hin as [Hin | Hin].
  - subst. exists rb; split; auto. intros; apply in_or_app; auto.
  - destruct (IH rl a eq_refl Hin) as (ra & Ea & Hs). exists ra; split; auto.
    intros; apply in_or_app; auto.
Qed.

Lemma flat_map_out_mono : forall f g l r,
  (forall s r, f s = Ok r -> g s = Ok r) ->
  flat_map_out f l = Ok r -> flat_map_out g l = Ok r.
Proof.
  induction l as [| a l IH]; simpl; intros r Hfg H; auto.
  destruct (f a) as [| ra] eqn:Ea; try discriminate.
  rewrite (Hfg _ _ Ea).
  destruct (flat_map_out f l) as [| rl] eqn:El; try discriminate.
  rewrite (IH rl Hfg eq_refl). exact H.
Qed.

Lemma interp_args_mono : forall m1 m2 ps vs s r,
  (forall p v s r, m1 p v s = Ok r -> m2 p v s = Ok r) ->
  interp_args m1 ps vs s = Ok r -> interp_args m2 ps vs s = Ok r.
Proof.
  induction ps as [| p ps IH]; intros [| v vs] s r Hm H; simpl in *; auto.
  unfold obind in *. destruct (m1 p v s) as [| r1] eqn:E1; try discriminate.
  rewrite (Hm _ _ _ _ E1). eapply flat_map_out_mono; [| exact H]. intros; eauto.
Qed.

(** ** Fuel: more fuel never loses results *)

Theorem interp_fuel_mono : forall D n m p v s r,
  n <= m -> interp D n p v s = Ok r -> interp D m p v s = Ok r.
Proof.
  intros D n. induction n as [| n IH]; intros m p v s r Hnm H; [discriminate |].
  destruct m as [| m]; [lia |]. assert (Hnm' : n <= m) by lia.
  assert (IH' : forall p v s r, interp D n p v s = Ok r -> interp D m p v s = Ok r)
    by (intros; eapply IH; eauto).
  destruct p; simpl in *; auto.
  - destruct v as [g vs | l]; auto. destruct (String.eqb f g && (length ps <=? length vs)); auto.
    eapply interp_args_mono; eauto.
  - destruct v as [g vs | l]; auto. destruct (length ps <=? length vs); auto.
    destruct (bind_var s x (VLit (LStr g))); auto. eapply interp_args_mono; eauto.
  - unfold oapp in *. destruct (interp D n p1 v s) eqn:E1; try discriminate.
    destruct (interp D n p2 v s) eqn:E2; try discriminate.
    rewrite (IH' _ _ _ _ E1), (IH' _ _ _ _ E2). exact H.
  - unfold omap in *. destruct (interp D n p v (remove s x)) eqn:E; try discriminate.
    rewrite (IH' _ _ _ _ E). exact H.
  - destruct (lookup_def D P); auto. destruct (length xs =? length (def_params d)); auto.
    unfold omap in *.
    destruct (interp D n (def_body d) v (frame_in s xs (def_params d))) eqn:E; try discriminate.
    rewrite (IH' _ _ _ _ E). exact H.
  - unfold omap in *. destruct (interp D n p v s) eqn:E; try discriminate.
    rewrite (IH' _ _ _ _ E). exact H.
  - unfold obind in *. destruct (interp D n p1 v s) eqn:E; try discriminate.
    rewrite (IH' _ _ _ _ E). eapply flat_map_out_mono; [| exact H].
    intros s0 r0 H0; simpl in H0 |- *. destruct (lookup s0 x); auto.
Qed.

(** ** Soundness *)

Lemma bind_var_sound : forall s x v s',
  bind_var s x v = Some s' -> subst_le s s' /\ lookup s' x = Some v.
Proof.
  unfold bind_var; intros s x v s' H. destruct (lookup s x) as [w|] eqn:E.
  - destruct (value_eqb w v) eqn:Ew; try discriminate. inversion H; subst.
    apply value_eqb_spec in Ew; subst. split; auto using subst_le_refl.
  - inversion H; subst. split; [apply subst_le_update; auto | apply lookup_update_eq].
Qed.

Lemma copy_back_sound : forall t xs ys s s',
  length xs = length ys -> copy_back t xs ys s = Some s' ->
  subst_le s s' /\ frame_out t s' xs ys.
Proof.
  induction xs as [| x xs IH]; intros [| y ys] s s' Hlen H; simpl in *; try discriminate.
  - inversion H; subst. split; [apply subst_le_refl | constructor].
  - injection Hlen as Hlen.
    destruct (lookup t y) as [w|] eqn:Ey.
    + destruct (bind_var s x w) as [s1|] eqn:Eb; try discriminate.
      apply bind_var_sound in Eb as [Hle Hx].
      destruct (IH ys s1 s' Hlen H) as [Hle' Hf].
      split; [eapply subst_le_trans; eauto |].
      constructor; auto. intros w' Hw'. rewrite Ey in Hw'. inversion Hw'; subst; auto.
    + destruct (IH ys s s' Hlen H) as [Hle' Hf]. split; auto.
      constructor; auto. intros w' Hw'. congruence.
Qed.

Lemma interp_args_sound : forall D m ps vs s r s',
  (forall p v s r s', In p ps -> m p v s = Ok r -> In s' r -> subst_le s s' /\ sem D s' v p) ->
  interp_args m ps vs s = Ok r -> In s' r -> subst_le s s' /\ sem_args D s' ps vs.
Proof.
  induction ps as [| p ps IH]; intros [| v vs] s r s' Hm H Hin; simpl in *.
  - inversion H; subst. destruct Hin as [<- | []]. split; [apply subst_le_refl | constructor].
  - inversion H; subst. destruct Hin as [<- | []]. split; [apply subst_le_refl | constructor].
  - inversion H; subst; contradiction.
  - unfold obind in H. destruct (m p v s) as [| r1] eqn:E1; try discriminate.
    destruct (flat_map_out_in _ _ _ _ H Hin) as (s1 & r2 & Hs1 & E2 & Hs').
    destruct (Hm p v s r1 s1 (or_introl eq_refl) E1 Hs1) as [Hle1 Hsem1].
    destruct (IH vs s1 r2 s' (fun p v s r s' Hp => Hm p v s r s' (or_intror Hp)) E2 Hs')
      as [Hle2 Hsem2].
    split; [eapply subst_le_trans; eauto |].
    constructor; auto. eapply sem_monotone; eauto.
Qed.

Theorem interp_sound : forall D n p v s r s',
  interp D n p v s = Ok r -> In s' r -> subst_le s s' /\ sem D s' v p.
Proof.
  intros D n. induction n as [| n IH]; intros p v s r s' H Hin; [discriminate |].
  destruct p; simpl in H.
  - (* M-Wild *)
    inversion H; subst. destruct Hin as [<- | []]. split; [apply subst_le_refl | constructor].
  - (* M-Var *)
    inversion H; subst. destruct (bind_var s x v) as [s1|] eqn:E; simpl in Hin; [| contradiction].
    destruct Hin as [<- | []]. apply bind_var_sound in E as [Hle Hx].
    split; auto. constructor; auto.
  - (* M-Lit *)
    destruct (value_eqb v (VLit l)) eqn:E; inversion H; subst; [| contradiction].
    apply value_eqb_spec in E; subst. destruct Hin as [<- | []].
    split; [apply subst_le_refl | constructor].
  - (* M-Op *)
    destruct v as [g vs | l]; [| inversion H; subst; contradiction].
    destruct (String.eqb f g) eqn:Ef; simpl in H; [| inversion H; subst; contradiction].
    apply String.eqb_eq in Ef; subst g.
    destruct (length ps <=? length vs); [| inversion H; subst; contradiction].
    destruct (interp_args_sound D (interp D n) ps vs s r s') as [Hle Hs]; auto.
    + intros; eapply IH; eauto.
    + split; auto. constructor; auto.
  - (* M-OpVar *)
    destruct v as [g vs | l]; [| inversion H; subst; contradiction].
    destruct (length ps <=? length vs); [| inversion H; subst; contradiction].
    destruct (bind_var s x (VLit (LStr g))) as [s1|] eqn:Eb; [| inversion H; subst; contradiction].
    apply bind_var_sound in Eb as [Hle1 Hx].
    destruct (interp_args_sound D (interp D n) ps vs s1 r s') as [Hle Hs]; auto.
    + intros; eapply IH; eauto.
    + split; [eapply subst_le_trans; eauto |]. econstructor; eauto.
  - (* M-AltL, M-AltR *)
    unfold oapp in H. destruct (interp D n p1 v s) as [| r1] eqn:E1; try discriminate.
    destruct (interp D n p2 v s) as [| r2] eqn:E2; try discriminate.
    inversion H; subst. apply in_app_or in Hin as [Hin | Hin].
    + destruct (IH _ _ _ _ _ E1 Hin). split; auto. apply M_AltL; auto.
    + destruct (IH _ _ _ _ _ E2 Hin). split; auto. apply M_AltR; auto.
  - (* M-Exists *)
    unfold omap in H. destruct (interp D n p v (remove s x)) as [| r1] eqn:E; try discriminate.
    inversion H; subst. apply in_map_iff in Hin as (s1 & <- & Hin).
    destruct (IH _ _ _ _ _ E Hin) as [Hle Hs].
    split.
    + intros y w Hy. rewrite lookup_restore. destruct (String.eqb y x) eqn:Eyx.
      * apply String.eqb_eq in Eyx; subst; auto.
      * apply Hle. rewrite lookup_remove, Eyx. exact Hy.
    + apply M_Exists with (u := match lookup s1 x with Some u => u | None => VLit LNone end).
      eapply sem_monotone; [exact Hs |].
      intros y w Hy. rewrite lookup_update, lookup_restore.
      destruct (String.eqb y x) eqn:Eyx; auto.
      apply String.eqb_eq in Eyx; subst. rewrite Hy. reflexivity.
  - (* M-Call *)
    destruct (lookup_def D P) as [d|] eqn:Ed; [| inversion H; subst; contradiction].
    destruct (length xs =? length (def_params d)) eqn:El; [| inversion H; subst; contradiction].
    apply Nat.eqb_eq in El.
    unfold omap in H.
    destruct (interp D n (def_body d) v (frame_in s xs (def_params d))) as [| r1] eqn:E;
      try discriminate.
    inversion H; subst. apply in_flat_map in Hin as (t & Ht & Hin).
    destruct (copy_back t xs (def_params d) s) as [s1|] eqn:Ec; simpl in Hin; [| contradiction].
    destruct Hin as [<- | []].
    destruct (IH _ _ _ _ _ E Ht) as [_ Hs].
    destruct (copy_back_sound _ _ _ _ _ El Ec) as [Hle Hf].
    split; auto. eapply M_Call; eauto.
  - (* M-Guard *)
    unfold omap in H. destruct (interp D n p v s) as [| r1] eqn:E; try discriminate.
    inversion H; subst. apply filter_In in Hin as [Hin Hg].
    destruct (IH _ _ _ _ _ E Hin). split; auto. constructor; auto.
  - (* M-Then *)
    unfold obind in H. destruct (interp D n p1 v s) as [| r1] eqn:E; try discriminate.
    destruct (flat_map_out_in _ _ _ _ H Hin) as (s1 & r2 & Hs1 & E2 & Hs').
    destruct (IH _ _ _ _ _ E Hs1) as [Hle1 Hsem1].
    destruct (lookup s1 x) as [w|] eqn:Ex; [| inversion E2; subst; contradiction].
    destruct (IH _ _ _ _ _ E2 Hs') as [Hle2 Hsem2].
    split; [eapply subst_le_trans; eauto |].
    eapply M_Then; eauto. eapply sem_monotone; eauto.
  - (* no rule for ⊥ *)
    inversion H; subst; contradiction.
Qed.
