(** * The interpreter agrees with the declarative semantics (LANGUAGE.md §6). *)

From Coq Require Import String ZArith List Bool Arith Lia.
From PyPM Require Import Syntax Semantics WellFormed Interp.
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

(** ** Well-formed patterns bind what §5 says they bind *)

Definition binds (B : list string) (s : subst) : Prop :=
  forall x, In x B -> exists w, lookup s x = Some w.

Lemma binds_le : forall B s t, binds B s -> subst_le s t -> binds B t.
Proof. unfold binds; intros B s t H Hle x Hx. destruct (H x Hx) as [w Hw]; eauto. Qed.

Lemma Forall2_combine : forall (R : string -> string -> Prop) xs ys x y,
  Forall2 R xs ys -> In (x, y) (combine xs ys) -> R x y.
Proof.
  intros R xs ys x y H. induction H; simpl; intros Hin; [contradiction |].
  destruct Hin as [E | Hin]; [inversion E; subst; auto | auto].
Qed.

Lemma call_binds_In : forall D bnd P xs x,
  In x (call_binds D bnd P xs) ->
  exists d y, lookup_def D P = Some d /\ In (x, y) (combine xs (def_params d)) /\ In y (bnd P).
Proof.
  unfold call_binds; intros D bnd P xs x H. destruct (lookup_def D P) as [d|]; [| contradiction].
  apply in_map_iff in H as ([x' y] & E & H). simpl in E; subst x'.
  apply filter_In in H as [H Hy]. simpl in Hy. apply mem_In in Hy. eauto.
Qed.

Section Binds.
Variable D : program.
Variable bnd : string -> list string.
Hypothesis HD : wf_program D bnd.

Lemma interp_args_binds : forall m ps vs B B' s r s',
  (forall p v B B' s r s', In p ps -> wf D bnd B p B' -> binds B s ->
     m p v s = Ok r -> In s' r -> binds B' s') ->
  wf_args D bnd B ps B' -> binds B s ->
  interp_args m ps vs s = Ok r -> In s' r -> binds B' s'.
Proof.
  induction ps as [| p ps IH]; intros [| v vs] B B' s r s' Hm Hwf Hb H Hin;
    inversion Hwf; subst; simpl in H.
  - inversion H; subst. destruct Hin as [<- | []]; auto.
  - inversion H; subst. destruct Hin as [<- | []]; auto.
  - inversion H; subst; contradiction.
  - unfold obind in H. destruct (m p v s) as [| r1] eqn:E1; try discriminate.
    destruct (flat_map_out_in _ _ _ _ H Hin) as (s1 & r2 & Hs1 & E2 & Hs').
    eapply IH; [| eauto | | exact E2 | exact Hs'].
    + intros; eapply Hm; eauto. right; auto.
    + eapply Hm; [left; reflexivity | eauto | eauto | exact E1 | exact Hs1].
Qed.

Lemma interp_binds : forall n p v B B' s r s',
  wf D bnd B p B' -> binds B s -> interp D n p v s = Ok r -> In s' r -> binds B' s'.
Proof.
  induction n as [| n IH]; intros p v B B' s r s' Hwf Hb H Hin; [discriminate |].
  destruct (interp_sound D (S n) p v s r s' H Hin) as [Hle _].
  inversion Hwf; subst; simpl in H.
  - inversion H; subst. destruct Hin as [<- | []]; auto.
  - intros y Hy. destruct (bind_var s x v) as [s1|] eqn:E; simpl in H; inversion H; subst;
      [| contradiction]. destruct Hin as [<- | []].
    apply bind_var_sound in E as [Hle1 Hx]. destruct Hy as [<- | Hy]; eauto.
    eapply binds_le; eauto.
  - destruct (value_eqb v (VLit l)); inversion H; subst; [| contradiction].
    destruct Hin as [<- | []]; auto.
  - destruct v as [g vs | l]; [| inversion H; subst; contradiction].
    destruct (String.eqb f g && (length ps <=? length vs)); [| inversion H; subst; contradiction].
    eapply interp_args_binds; eauto; intros; eapply IH; eauto.
  - destruct v as [g vs | l]; [| inversion H; subst; contradiction].
    destruct (length ps <=? length vs); [| inversion H; subst; contradiction].
    destruct (bind_var s x (VLit (LStr g))) as [s1|] eqn:Eb; [| inversion H; subst; contradiction].
    apply bind_var_sound in Eb as [Hle1 Hx].
    eapply interp_args_binds; [| eauto | | eauto | eauto].
    + intros; eapply IH; eauto.
    + intros y [<- | Hy]; eauto. eapply binds_le; eauto.
  - unfold oapp in H. destruct (interp D n p1 v s) as [| r1] eqn:E1; try discriminate.
    destruct (interp D n p2 v s) as [| r2] eqn:E2; try discriminate.
    inversion H; subst. intros y Hy. apply In_inter in Hy as [Hy1 Hy2].
    apply in_app_or in Hin as [Hin | Hin]; [eapply IH with (p := p1) | eapply IH with (p := p2)];
      eauto.
  - unfold omap in H. destruct (interp D n p0 v (remove s x)) as [| r1] eqn:E; try discriminate.
    inversion H; subst. apply in_map_iff in Hin as (s1 & <- & Hin).
    assert (Hb1 : binds B1 s1).
    { eapply IH; [eauto | | exact E | exact Hin].
      intros y Hy. apply In_rem in Hy as [Hy Hxy]. rewrite lookup_remove.
      apply String.eqb_neq in Hxy. rewrite String.eqb_sym, Hxy. auto. }
    intros y Hy. rewrite lookup_restore.
    assert (Hr : In y (rem x B1) -> exists w, lookup s1 y = Some w /\ String.eqb y x = false).
    { intros Hy'. apply In_rem in Hy' as [Hy' Hxy]. destruct (Hb1 y Hy') as [w Hw].
      exists w; split; auto. apply String.eqb_neq; auto. }
    destruct (mem x B) eqn:Em.
    + destruct Hy as [<- | Hy].
      * rewrite String.eqb_refl. apply mem_In in Em. auto.
      * destruct (Hr Hy) as (w & Hw & E'). rewrite E'; eauto.
    + destruct (Hr Hy) as (w & Hw & E'). rewrite E'; eauto.
  - rename H0 into Hd, H1 into Hlen.
    rewrite Hd, Hlen, Nat.eqb_refl in H. unfold omap in H.
    destruct (interp D n (def_body d) v (frame_in s xs (def_params d))) as [| r1] eqn:E;
      try discriminate.
    inversion H; subst. apply in_flat_map in Hin as (t & Ht & Hin).
    destruct (copy_back t xs (def_params d) s) as [s1|] eqn:Ec; simpl in Hin; [| contradiction].
    destruct Hin as [<- | []].
    destruct (copy_back_sound _ _ _ _ _ Hlen Ec) as [Hle1 Hf].
    destruct (wf_program_lookup D bnd P d HD Hd) as (_ & _ & B2 & Hwb & Hincl).
    assert (Hbt : binds B2 t) by (eapply IH; [exact Hwb | | exact E | exact Ht];
                                  intros y []).
    intros y Hy. apply in_app_or in Hy as [Hy | Hy]; [| exact (binds_le B s s1 Hb Hle1 y Hy)].
    apply call_binds_In in Hy as (d' & z & Hd' & Hyz & Hz). rewrite Hd in Hd'.
    inversion Hd'; subst d'.
    destruct (Hbt z (Hincl z Hz)) as [w Hw].
    exists w. exact (Forall2_combine _ _ _ _ _ Hf Hyz w Hw).
  - unfold omap in H. destruct (interp D n p0 v s) as [| r1] eqn:E; try discriminate.
    inversion H; subst. apply filter_In in Hin as [Hin _]. eapply IH; eauto.
  - unfold obind in H. destruct (interp D n p0 v s) as [| r1] eqn:E; try discriminate.
    destruct (flat_map_out_in _ _ _ _ H Hin) as (s1 & r2 & Hs1 & E2 & Hs').
    assert (Hb1 : binds B1 s1) by (eapply IH; eauto).
    destruct (lookup s1 x) as [w|]; [| inversion E2; subst; contradiction].
    eapply IH; eauto.
  - inversion H; subst; contradiction.
Qed.

End Binds.

(** ** Completeness *)

Lemma bind_var_complete : forall s t x v,
  subst_le s t -> lookup t x = Some v ->
  exists s', bind_var s x v = Some s' /\ subst_le s' t.
Proof.
  unfold bind_var; intros s t x v Hle Hx. destruct (lookup s x) as [w|] eqn:E.
  - rewrite (Hle _ _ E) in Hx. inversion Hx; subst. rewrite value_eqb_refl. eauto.
  - exists (update s x v). split; auto. intros y w Hy. rewrite lookup_update in Hy.
    destruct (String.eqb y x) eqn:Eyx; auto.
    apply String.eqb_eq in Eyx; subst. inversion Hy; subst; auto.
Qed.

Lemma frame_in_lookup : forall s xs ys y w,
  lookup (frame_in s xs ys) y = Some w ->
  exists x, In (x, y) (combine xs ys) /\ lookup s x = Some w.
Proof.
  induction xs as [| x xs IH]; intros [| y' ys] y w H; simpl in *; try discriminate.
  destruct (lookup s x) as [u|] eqn:Eu.
  - rewrite lookup_update in H. destruct (String.eqb y y') eqn:E.
    + apply String.eqb_eq in E; subst. inversion H; subst. eauto.
    + destruct (IH ys y w H) as (x' & Hin & Hx'). eauto.
  - destruct (IH ys y w H) as (x' & Hin & Hx'). eauto.
Qed.

Lemma combine_nodup : forall (xs ys : list string) x x' y,
  NoDup ys -> In (x, y) (combine xs ys) -> In (x', y) (combine xs ys) -> x = x'.
Proof.
  induction xs as [| a xs IH]; intros [| b ys] x x' y Hnd H1 H2; simpl in *; try contradiction.
  inversion Hnd; subst.
  destruct H1 as [E1 | H1], H2 as [E2 | H2].
  - inversion E1; inversion E2; subst; auto.
  - inversion E1; subst. apply in_combine_r in H2. contradiction.
  - inversion E2; subst. apply in_combine_r in H1. contradiction.
  - eauto.
Qed.

Lemma copy_back_complete : forall t xs ys s u,
  subst_le s u ->
  (forall x y w, In (x, y) (combine xs ys) -> lookup t y = Some w -> lookup u x = Some w) ->
  exists s', copy_back t xs ys s = Some s' /\ subst_le s' u.
Proof.
  induction xs as [| x xs IH]; intros [| y ys] s u Hle H; simpl; eauto.
  destruct (lookup t y) as [w|] eqn:Ey.
  - destruct (bind_var_complete s u x w Hle (H x y w (or_introl eq_refl) Ey)) as (s1 & E1 & Hle1).
    rewrite E1. apply IH; auto.
    intros x' y' w' Hin Hw. apply (H x' y' w' (or_intror Hin) Hw).
  - apply IH; auto.
    intros x' y' w' Hin Hw. apply (H x' y' w' (or_intror Hin) Hw).
Qed.

Lemma lookup_app : forall (s1 s2 : subst) y,
  lookup (s1 ++ s2) y = match lookup s1 y with Some w => Some w | None => lookup s2 y end.
Proof.
  induction s1 as [| [z w] s1 IH]; intros s2 y; simpl; auto.
  destruct (String.eqb y z); auto.
Qed.

Section Complete.
Variable D : program.
Variable bnd : string -> list string.
Hypothesis HD : wf_program D bnd.

Definition complete_at (t : subst) (v : value) (p : pat) : Prop :=
  forall t', subst_le t t' -> forall n B B' s r,
  wf D bnd B p B' -> binds B s -> subst_le s t' ->
  interp D n p v s = Ok r -> exists s', In s' r /\ subst_le s' t'.

Definition complete_args_at (t : subst) (ps : list pat) (vs : list value) : Prop :=
  forall t', subst_le t t' -> forall n B B' s r,
  wf_args D bnd B ps B' -> binds B s -> subst_le s t' ->
  interp_args (interp D n) ps vs s = Ok r -> exists s', In s' r /\ subst_le s' t'.

Lemma interp_complete_mut : forall t v p, sem D t v p -> complete_at t v p.
Proof.
  apply (sem_mut D (fun t v p _ => complete_at t v p) (fun t ps vs _ => complete_args_at t ps vs));
    unfold complete_at, complete_args_at.
  - (* M_Wild *)
    intros t v t' Htt n B B' s r Hwf Hb Hle H.
    destruct n; try discriminate. simpl in H. inversion H; subst. exists s; simpl; auto.
  - (* M_Var *)
    intros t x v Hx t' Htt n B B' s r Hwf Hb Hle H.
    destruct n; try discriminate. simpl in H.
    destruct (bind_var_complete s t' x v Hle (Htt _ _ Hx)) as (s1 & E & Hle1).
    rewrite E in H. inversion H; subst. exists s1; simpl; auto.
  - (* M_Lit *)
    intros t l t' Htt n B B' s r Hwf Hb Hle H.
    destruct n; try discriminate. cbn [interp] in H. rewrite value_eqb_refl in H.
    inversion H; subst. exists s; simpl; auto.
  - (* M_Op *)
    intros t f ps vs Hargs IH t' Htt n B B' s r Hwf Hb Hle H.
    destruct n; try discriminate. simpl in H. rewrite String.eqb_refl in H.
    pose proof (sem_args_length _ _ _ _ Hargs) as Hl. apply Nat.leb_le in Hl.
    rewrite Hl in H. simpl in H. inversion Hwf; subst. eapply IH; eauto.
  - (* M_OpVar *)
    intros t x f ps vs Hx Hargs IH t' Htt n B B' s r Hwf Hb Hle H.
    destruct n; try discriminate. simpl in H.
    pose proof (sem_args_length _ _ _ _ Hargs) as Hl. apply Nat.leb_le in Hl. rewrite Hl in H.
    destruct (bind_var_complete s t' x (VLit (LStr f)) Hle (Htt _ _ Hx)) as (s2 & E & Hle2).
    rewrite E in H. inversion Hwf; subst. eapply IH; [exact Htt | eauto | | exact Hle2 | exact H].
    apply bind_var_sound in E as [Hle3 Hx3].
    intros y [<- | Hy]; eauto. eapply binds_le; eauto.
  - (* M_AltL *)
    intros t v p1 p2 Hp IH t' Htt n B B' s r Hwf Hb Hle H.
    destruct n; try discriminate. simpl in H. unfold oapp in H.
    destruct (interp D n p1 v s) as [| r1] eqn:E1; try discriminate.
    destruct (interp D n p2 v s) as [| r2] eqn:E2; try discriminate.
    inversion H; subst. inversion Hwf; subst.
    destruct (IH t' Htt n B B1 s r1) as (s' & Hin & Hle'); auto.
    exists s'; split; auto. apply in_or_app; auto.
  - (* M_AltR *)
    intros t v p1 p2 Hp IH t' Htt n B B' s r Hwf Hb Hle H.
    destruct n; try discriminate. simpl in H. unfold oapp in H.
    destruct (interp D n p1 v s) as [| r1] eqn:E1; try discriminate.
    destruct (interp D n p2 v s) as [| r2] eqn:E2; try discriminate.
    inversion H; subst. inversion Hwf; subst.
    destruct (IH t' Htt n B B2 s r2) as (s' & Hin & Hle'); auto.
    exists s'; split; auto. apply in_or_app; auto.
  - (* M_Exists *)
    intros t v x p u Hp IH t' Htt n B B' s r Hwf Hb Hle H.
    destruct n; try discriminate. simpl in H. unfold omap in H.
    destruct (interp D n p v (remove s x)) as [| r1] eqn:E; try discriminate.
    inversion H; subst. inversion Hwf; subst.
    destruct (IH (update t' x u) (subst_le_update_both _ _ _ _ Htt) n (rem x B) B1 (remove s x) r1)
      as (s1 & Hin & Hle1); auto.
    + intros y Hy. apply In_rem in Hy as [Hy Hxy]. rewrite lookup_remove.
      apply String.eqb_neq in Hxy. rewrite String.eqb_sym, Hxy. auto.
    + intros y w Hy. rewrite lookup_remove in Hy. rewrite lookup_update.
      destruct (String.eqb y x); [discriminate | auto].
    + exists (restore s1 x (lookup s x)).
      split; [apply (in_map (fun s' => restore s' x (lookup s x))); auto |].
      intros y w Hy. rewrite lookup_restore in Hy. destruct (String.eqb y x) eqn:Eyx.
      * apply String.eqb_eq in Eyx; subst. auto.
      * apply Hle1 in Hy. rewrite lookup_update, Eyx in Hy. exact Hy.
  - (* M_Call *)
    intros t v P xs d tb Hd Hb IH Hf t' Htt n B B' s r Hwf HbB Hle H.
    destruct n; try discriminate. simpl in H. rewrite Hd in H.
    inversion Hwf; subst.
    match goal with H1 : lookup_def D P = Some ?d0, H2 : length xs = _ |- _ =>
      rewrite Hd in H1; inversion H1; subst d0; rewrite H2, Nat.eqb_refl in H end.
    unfold omap in H.
    set (fr := frame_in s xs (def_params d)) in H.
    destruct (interp D n (def_body d) v fr) as [| r1] eqn:E; try discriminate.
    inversion H; subst.
    destruct (wf_program_lookup D bnd P d HD Hd) as (Hnd & _ & B2 & Hwb & _).
    (* every parameter bound by the frame and by [tb] is bound to the same value *)
    assert (Hfr : forall x y w, In (x, y) (combine xs (def_params d)) ->
                    lookup (fr ++ tb) y = Some w -> lookup t' x = Some w).
    { intros x y w Hxy Hy. rewrite lookup_app in Hy.
      destruct (lookup fr y) as [w'|] eqn:Ey.
      - inversion Hy; subst w'. apply frame_in_lookup in Ey as (x' & Hx'y & Hx').
        rewrite (combine_nodup _ _ _ _ _ Hnd Hxy Hx'y). auto.
      - apply Htt. exact (Forall2_combine _ _ _ _ _ Hf Hxy w Hy). }
    destruct (IH (fr ++ tb)) with (n := n) (B := @nil string) (B' := B2) (s := fr) (r := r1)
      as (t1 & Ht1 & Hle1); auto.
    + intros y w Hy. rewrite lookup_app.
      destruct (lookup fr y) as [w'|] eqn:Ey; auto.
      apply frame_in_lookup in Ey as (x' & Hx'y & Hx').
      pose proof (Forall2_combine _ _ _ _ _ Hf Hx'y w Hy) as Hw.
      apply Htt in Hw. apply Hle in Hx'. congruence.
    + intros y [].
    + intros y w Hy. rewrite lookup_app, Hy. reflexivity.
    + destruct (copy_back_complete t1 xs (def_params d) s t' Hle) as (s1 & Ec & Hle2).
      { intros x y w Hxy Hy. eapply Hfr; eauto. }
      exists s1. split; auto. apply in_flat_map. exists t1. rewrite Ec. simpl; auto.
  - (* M_Guard *)
    intros t v p g Hp IH Hg t' Htt n B B' s r Hwf Hb Hle H.
    destruct n; try discriminate. simpl in H. unfold omap in H.
    destruct (interp D n p v s) as [| r1] eqn:E; try discriminate.
    inversion H; subst. inversion Hwf; subst.
    destruct (IH t' Htt n B B' s r1) as (s1 & Hin & Hle1); auto.
    exists s1. split; auto. apply filter_In. split; auto.
    assert (Hb1 : binds B' s1) by (eapply interp_binds; eauto).
    rewrite <- (eval_guard_mono t t' g Htt Hg). apply guard_local.
    match goal with Hi : incl (gfv g) B' |- _ => rename Hi into Hincl end.
    intros x Hx. destruct (Hb1 x (Hincl x Hx)) as [w Hw]. rewrite Hw. symmetry; auto.
  - (* M_Then *)
    intros t v p x w q Hp IHp Hx Hq IHq t' Htt n B B' s r Hwf Hb Hle H.
    destruct n; try discriminate. simpl in H. unfold obind in H.
    destruct (interp D n p v s) as [| r1] eqn:E; try discriminate.
    inversion Hwf; subst.
    destruct (IHp t' Htt n B B1 s r1) as (s1 & Hin & Hle1); auto.
    assert (Hb1 : binds B1 s1) by (eapply interp_binds; eauto).
    destruct (flat_map_out_ok _ _ _ _ H Hin) as (r2 & E2 & Hsub).
    match goal with Hi : In x B1 |- _ => rename Hi into HxB end.
    destruct (Hb1 x HxB) as [w' Hw']. simpl in E2. rewrite Hw' in E2.
    assert (w' = w) by (apply Hle1 in Hw'; apply Htt in Hx; congruence). subst w'.
    destruct (IHq t' Htt n B1 B' s1 r2) as (s2 & Hin2 & Hle2); auto.
    exists s2; auto.
  - (* MA_Nil *)
    intros t vs t' Htt n B B' s r Hwf Hb Hle H.
    destruct vs; simpl in H; inversion H; subst; exists s; simpl; auto.
  - (* MA_Cons *)
    intros t p ps v vs Hp IHp Hps IHps t' Htt n B B' s r Hwf Hb Hle H.
    simpl in H. unfold obind in H.
    destruct (interp D n p v s) as [| r1] eqn:E; try discriminate.
    inversion Hwf; subst.
    destruct (IHp t' Htt n B B1 s r1) as (s1 & Hin & Hle1); auto.
    assert (Hb1 : binds B1 s1) by (eapply interp_binds; eauto).
    destruct (flat_map_out_ok _ _ _ _ H Hin) as (r2 & E2 & Hsub).
    destruct (IHps t' Htt n B1 B' s1 r2) as (s2 & Hin2 & Hle2); auto.
    exists s2; auto.
Qed.

End Complete.

(** Completeness (§6): whenever the interpreter finishes, it finds a result
    below every declarative solution [t] above σ. For guarded programs it
    finishes with the fuel of [Totality.v]. *)
Theorem interp_complete : forall D bnd B B' p v s t n r,
  wf_program D bnd -> wf D bnd B p B' -> binds B s ->
  subst_le s t -> sem D t v p ->
  interp D n p v s = Ok r -> exists s', In s' r /\ subst_le s' t.
Proof.
  intros D bnd B B' p v s t n r HD Hwf Hb Hle Hsem H.
  eapply (interp_complete_mut D bnd HD t v p Hsem t (subst_le_refl t)); eauto.
Qed.
