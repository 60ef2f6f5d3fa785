(** * Guarded programs: the fuel bound of §6 makes the interpreter total. *)

From Coq Require Import String ZArith List Bool Arith Lia.
From PyPM Require Import Syntax Semantics WellFormed Interp InterpProof.
Import ListNotations.

(** ** Bound variables hold values no larger than the matched value *)

Definition small (V : value) (B : list string) (s : subst) : Prop :=
  forall x, In x B -> exists w, lookup s x = Some w /\ vsize w <= vsize V.

Lemma small_le : forall V B s t, small V B s -> subst_le s t -> small V B t.
Proof. unfold small; intros V B s t H Hle x Hx. destruct (H x Hx) as (w & Hw & Hs); eauto. Qed.

Lemma vsize_pos : forall v, 1 <= vsize v.
Proof. destruct v; simpl; lia. Qed.

Lemma vsize_arg : forall f vs w, In w vs -> vsize w < vsize (VTerm f vs).
Proof.
  intros f vs w H. simpl. apply Nat.lt_succ_r.
  induction vs as [| a vs IH]; simpl in *; [contradiction |].
  destruct H as [<- | H]; [lia | specialize (IH H); lia].
Qed.

Lemma psize_arg : forall ps p, In p ps -> psize p <= fold_right (fun q n => psize q + n) 0 ps.
Proof.
  induction ps as [| a ps IH]; simpl; intros p H; [contradiction |].
  destruct H as [<- | H]; [lia | specialize (IH p H); lia].
Qed.

Section Small.
Variable D : program.
Variable bnd : string -> list string.
Hypothesis HD : wf_program D bnd.

Lemma interp_args_small : forall m ps vs V B B' s r s',
  (forall p v B B' s r s', In p ps -> In v vs -> wf D bnd B p B' -> small V B s ->
     m p v s = Ok r -> In s' r -> small V B' s') ->
  wf_args D bnd B ps B' -> small V B s ->
  interp_args m ps vs s = Ok r -> In s' r -> small V B' s'.
Proof.
  induction ps as [| p ps IH]; intros [| v vs] V B B' s r s' Hm Hwf Hb H Hin;
    inversion Hwf; subst; simpl in H.
  - inversion H; subst. destruct Hin as [<- | []]; auto.
  - inversion H; subst. destruct Hin as [<- | []]; auto.
  - inversion H; subst; contradiction.
  - unfold obind in H. destruct (m p v s) as [| r1] eqn:E1; try discriminate.
    destruct (flat_map_out_in _ _ _ _ H Hin) as (s1 & r2 & Hs1 & E2 & Hs').
    eapply IH; [| eauto | | exact E2 | exact Hs'].
    + intros; eapply Hm; eauto; right; auto.
    + eapply Hm; [left; reflexivity | left; reflexivity | eauto | eauto | exact E1 | exact Hs1].
Qed.

Lemma interp_small : forall n p v V B B' s r s',
  wf D bnd B p B' -> small V B s -> vsize v <= vsize V ->
  interp D n p v s = Ok r -> In s' r -> small V B' s'.
Proof.
  induction n as [| n IH]; intros p v V B B' s r s' Hwf Hb Hv H Hin; [discriminate |].
  destruct (interp_sound D (S n) p v s r s' H Hin) as [Hle _].
  inversion Hwf; subst; simpl in H.
  - inversion H; subst. destruct Hin as [<- | []]; auto.
  - intros y Hy. destruct (bind_var s x v) as [s1|] eqn:E; simpl in H; inversion H; subst;
      [| contradiction]. destruct Hin as [<- | []].
    apply bind_var_sound in E as [Hle1 Hx]. destruct Hy as [<- | Hy]; eauto.
    eapply small_le; eauto.
  - destruct (value_eqb v (VLit l)); inversion H; subst; [| contradiction].
    destruct Hin as [<- | []]; auto.
  - destruct v as [g vs | l]; [| inversion H; subst; contradiction].
    destruct (String.eqb f g && (length ps <=? length vs)); [| inversion H; subst; contradiction].
    eapply interp_args_small; [| eauto | eauto | eauto | eauto].
    intros p0 v0 B0 B0' s0 r0 s0' Hp Hv0 Hw Hs E Hi.
    eapply IH; [exact Hw | exact Hs | | exact E | exact Hi].
    pose proof (vsize_arg g vs v0 Hv0). lia.
  - destruct v as [g vs | l]; [| inversion H; subst; contradiction].
    destruct (length ps <=? length vs); [| inversion H; subst; contradiction].
    destruct (bind_var s x (VLit (LStr g))) as [s1|] eqn:Eb; [| inversion H; subst; contradiction].
    apply bind_var_sound in Eb as [Hle1 Hx].
    eapply interp_args_small; [| eauto | | eauto | eauto].
    + intros p0 v0 B0 B0' s0 r0 s0' Hp Hv0 Hw Hs E Hi.
      eapply IH; [exact Hw | exact Hs | | exact E | exact Hi].
      pose proof (vsize_arg g vs v0 Hv0). lia.
    + intros y [<- | Hy].
      * exists (VLit (LStr g)). split; auto. apply vsize_pos.
      * eapply small_le; eauto.
  - unfold oapp in H. destruct (interp D n p1 v s) as [| r1] eqn:E1; try discriminate.
    destruct (interp D n p2 v s) as [| r2] eqn:E2; try discriminate.
    inversion H; subst. intros y Hy. apply In_inter in Hy as [Hy1 Hy2].
    apply in_app_or in Hin as [Hin | Hin]; [eapply IH with (p := p1) | eapply IH with (p := p2)];
      eauto.
  - unfold omap in H. destruct (interp D n p0 v (remove s x)) as [| r1] eqn:E; try discriminate.
    inversion H; subst. apply in_map_iff in Hin as (s1 & <- & Hin).
    assert (Hb1 : small V B1 s1).
    { eapply IH; [eauto | | eauto | exact E | exact Hin].
      intros y Hy. apply In_rem in Hy as [Hy Hxy]. rewrite lookup_remove.
      apply String.eqb_neq in Hxy. rewrite String.eqb_sym, Hxy. auto. }
    intros y Hy. rewrite lookup_restore.
    assert (Hr : In y (rem x B1) ->
                 exists w, lookup s1 y = Some w /\ vsize w <= vsize V /\ String.eqb y x = false).
    { intros Hy'. apply In_rem in Hy' as [Hy' Hxy]. destruct (Hb1 y Hy') as (w & Hw & Hs).
      exists w; split; auto. split; auto. apply String.eqb_neq; auto. }
    destruct (mem x B) eqn:Em.
    + destruct Hy as [<- | Hy].
      * rewrite String.eqb_refl. apply mem_In in Em. auto.
      * destruct (Hr Hy) as (w & Hw & Hs & E'). rewrite E'; eauto.
    + destruct (Hr Hy) as (w & Hw & Hs & E'). rewrite E'; eauto.
  - rename H0 into Hd, H1 into Hlen.
    rewrite Hd, Hlen, Nat.eqb_refl in H. unfold omap in H.
    destruct (interp D n (def_body d) v (frame_in s xs (def_params d))) as [| r1] eqn:E;
      try discriminate.
    inversion H; subst. apply in_flat_map in Hin as (t & Ht & Hin).
    destruct (copy_back t xs (def_params d) s) as [s1|] eqn:Ec; simpl in Hin; [| contradiction].
    destruct Hin as [<- | []].
    destruct (copy_back_sound _ _ _ _ _ Hlen Ec) as [Hle1 Hf].
    destruct (wf_program_lookup D bnd P d HD Hd) as (_ & _ & B2 & Hwb & Hincl).
    assert (Hbt : small v B2 t) by (eapply IH; [exact Hwb | | | exact E | exact Ht];
                                    [intros y [] | lia]).
    intros y Hy. apply in_app_or in Hy as [Hy | Hy]; [| exact (small_le V B s s1 Hb Hle1 y Hy)].
    apply call_binds_In in Hy as (d' & z & Hd' & Hyz & Hz). rewrite Hd in Hd'.
    inversion Hd'; subst d'.
    destruct (Hbt z (Hincl z Hz)) as (w & Hw & Hs).
    exists w. split; [exact (Forall2_combine _ _ _ _ _ Hf Hyz w Hw) | lia].
  - unfold omap in H. destruct (interp D n p0 v s) as [| r1] eqn:E; try discriminate.
    inversion H; subst. apply filter_In in Hin as [Hin _]. eapply IH; eauto.
  - unfold obind in H. destruct (interp D n p0 v s) as [| r1] eqn:E; try discriminate.
    destruct (flat_map_out_in _ _ _ _ H Hin) as (s1 & r2 & Hs1 & E2 & Hs').
    assert (Hb1 : small V B1 s1) by (eapply IH; eauto).
    destruct (lookup s1 x) as [w|] eqn:Ex; [| inversion E2; subst; contradiction].
    match goal with Hi : In x B1 |- _ => rename Hi into HxB end.
    destruct (Hb1 x HxB) as (w' & Hw' & Hs). rewrite Ex in Hw'. inversion Hw'; subst w'.
    eapply IH; [eauto | exact Hb1 | exact Hs | exact E2 | exact Hs'].
  - inversion H; subst; contradiction.
Qed.

End Small.

(** ** Guarded recursion, counting operators from the binding of a variable *)

(** A depth environment: for bound variables, how many operator patterns lie
    at least between the root of the body (or query) and the place where the
    variable was bound. The [q] of [p ; x ≍ q] is matched at the depth of [x]:
    its value is the subterm that [x] was bound to. *)
Definition denv := list (string * nat).

Fixpoint dlookup (E : denv) (x : string) : option nat :=
  match E with
  | [] => None
  | (y, k) :: E' => if String.eqb x y then Some k else dlookup E' x
  end.

Lemma dlookup_some : forall E x k, In (x, k) E -> exists k', dlookup E x = Some k'.
Proof.
  induction E as [| [z k'] E IH]; simpl; intros x k H; [contradiction |].
  destruct (String.eqb x z) eqn:Ex; eauto. destruct H as [H | H]; eauto.
  inversion H; subst. rewrite String.eqb_refl in Ex. discriminate.
Qed.

Lemma dlookup_In : forall E x k, dlookup E x = Some k -> In (x, k) E.
Proof.
  induction E as [| [z k'] E IH]; simpl; intros x k H; [discriminate |].
  destruct (String.eqb x z) eqn:Ex; [| right; auto].
  apply String.eqb_eq in Ex; subst. inversion H; subst. left; auto.
Qed.

Definition drem (x : string) (E : denv) : denv := filter (fun b => negb (String.eqb x (fst b))) E.

Definition dmeet (E1 E2 : denv) : denv :=
  flat_map (fun b => match dlookup E2 (fst b) with
                     | Some k => [(fst b, min (snd b) k)]
                     | None => []
                     end) E1.

Definition ddepth (E : denv) (x : string) : nat :=
  match dlookup E x with Some k => k | None => 0 end.

Section Depth.
Variable D : program.
Variable bnd : string -> list string.

(** The depth environment after [p], matched at depth [d]. *)
Fixpoint dafter (E : denv) (d : nat) (p : pat) {struct p} : denv :=
  let fix dafter_list (E : denv) (ps : list pat) : denv :=
      match ps with
      | [] => E
      | q :: qs => dafter_list (dafter E (S d) q) qs
      end in
  match p with
  | PWild | PLit _ | PFail => E
  | PVar x => (x, d) :: E
  | POp _ ps => dafter_list E ps
  | POpVar x ps => dafter_list ((x, d) :: E) ps
  | PAlt p1 p2 => dmeet (dafter E d p1) (dafter E d p2)
  | PExists x p =>
      let E1 := drem x (dafter (drem x E) d p) in
      match dlookup E x with Some k => (x, k) :: E1 | None => E1 end
  | PCall P xs => map (fun x => (x, d)) (call_binds D bnd P xs) ++ E
  | PGuard p _ => dafter E d p
  | PThen p x q => let E1 := dafter E d p in dafter E1 (ddepth E1 x) q
  end.

Lemma dafter_alt : forall E d p1 p2,
  dafter E d (PAlt p1 p2) = dmeet (dafter E d p1) (dafter E d p2).
Proof. reflexivity. Qed.

Lemma dafter_exists : forall E d x p,
  dafter E d (PExists x p) =
  (let E1 := drem x (dafter (drem x E) d p) in
   match dlookup E x with Some k => (x, k) :: E1 | None => E1 end).
Proof. reflexivity. Qed.

Lemma dafter_guard : forall E d p g, dafter E d (PGuard p g) = dafter E d p.
Proof. reflexivity. Qed.

Lemma dafter_then : forall E d p x q,
  dafter E d (PThen p x q) = (let E1 := dafter E d p in dafter E1 (ddepth E1 x) q).
Proof. reflexivity. Qed.

Fixpoint dafter_args (E : denv) (d : nat) (ps : list pat) : denv :=
  match ps with
  | [] => E
  | q :: qs => dafter_args (dafter E d q) d qs
  end.

Lemma dafter_op : forall E d f ps, dafter E d (POp f ps) = dafter_args E (S d) ps.
Proof. intros E d f ps. simpl. revert E. induction ps; simpl; auto. Qed.

Lemma dafter_opvar : forall E d x ps,
  dafter E d (POpVar x ps) = dafter_args ((x, d) :: E) (S d) ps.
Proof. intros E d x ps. simpl. generalize ((x, d) :: E). induction ps; simpl; auto. Qed.

(** The calls in [p], each with the depth at which it is made. *)
Fixpoint dcalls (E : denv) (d : nat) (p : pat) {struct p} : list (nat * string) :=
  let fix dcalls_list (E : denv) (ps : list pat) : list (nat * string) :=
      match ps with
      | [] => []
      | q :: qs => dcalls E (S d) q ++ dcalls_list (dafter E (S d) q) qs
      end in
  match p with
  | POp _ ps => dcalls_list E ps
  | POpVar x ps => dcalls_list ((x, d) :: E) ps
  | PAlt p1 p2 => dcalls E d p1 ++ dcalls E d p2
  | PExists x p => dcalls (drem x E) d p
  | PCall P _ => [(d, P)]
  | PGuard p _ => dcalls E d p
  | PThen p x q => dcalls E d p ++ (let E1 := dafter E d p in dcalls E1 (ddepth E1 x) q)
  | _ => []
  end.

Fixpoint dcalls_args (E : denv) (d : nat) (ps : list pat) : list (nat * string) :=
  match ps with
  | [] => []
  | q :: qs => dcalls E d q ++ dcalls_args (dafter E d q) d qs
  end.

Lemma dcalls_op : forall E d f ps, dcalls E d (POp f ps) = dcalls_args E (S d) ps.
Proof. intros E d f ps. simpl. revert E. induction ps; simpl; congruence. Qed.

Lemma dcalls_opvar : forall E d x ps,
  dcalls E d (POpVar x ps) = dcalls_args ((x, d) :: E) (S d) ps.
Proof. intros E d x ps. simpl. generalize ((x, d) :: E). induction ps; simpl; congruence. Qed.

(** Guarded by a ranking [rk]: a call made at depth 0 goes to a definition of
    smaller rank, so every cycle of calls passes under an operator. *)
Definition guarded (rk : string -> nat) : Prop :=
  forall P d k Q, In (P, d) D -> In (k, Q) (dcalls [] 0 (def_body d)) -> k = 0 -> rk Q < rk P.

Definition guardedb (rk : string -> nat) : bool :=
  forallb (fun b => forallb (fun c => (0 <? fst c) || (rk (snd c) <? rk (fst b)))
                            (dcalls [] 0 (def_body (snd b)))) D.

Lemma guardedb_guarded : forall rk, guardedb rk = true <-> guarded rk.
Proof.
  unfold guardedb, guarded; intros rk. rewrite forallb_forall. split.
  - intros H P d k Q Hin Hc Hk. subst k. specialize (H (P, d) Hin). rewrite forallb_forall in H.
    specialize (H (0, Q) Hc). simpl in H. apply Nat.ltb_lt; auto.
  - intros H [P d] Hin. rewrite forallb_forall. intros [k Q] Hc; simpl.
    destruct k as [| k]; simpl; auto. apply Nat.ltb_lt. eapply H; eauto.
Qed.

(** Ranks by iteration: one more than the largest rank of a callee at depth 0,
    as a table by name recomputed [rank_rounds] times. *)
Definition rank_step (t : list (string * nat)) (body : pat) : nat :=
  fold_right (fun (c : nat * string) (n : nat) =>
                match fst c with 0 => max (S (tbl_get 0 t (snd c))) n | S _ => n end)
             0 (dcalls [] 0 body).

Fixpoint rank_table (k : nat) : list (string * nat) :=
  match k with
  | O => []
  | S k => let t := rank_table k in map (fun b => (fst b, rank_step t (def_body (snd b)))) D
  end.

(** Ranks only grow and stay at most [length D + 1] on a guarded program, so
    this many rounds reach the fixed point (see [check_guarded_wf]). *)
Definition rank_rounds : nat := S (length D * S (length D)).

(** Well-formed patterns: the variables §5 says are bound have a depth. *)
Lemma dafter_dom : forall B p B', wf D bnd B p B' ->
  forall E d, incl B (map fst E) -> incl B' (map fst (dafter E d p)).
Proof.
  apply (wf_mut D bnd
    (fun B p B' _ => forall E d, incl B (map fst E) -> incl B' (map fst (dafter E d p)))
    (fun B ps B' _ => forall E d, incl B (map fst E) -> incl B' (map fst (dafter_args E d ps)))).
  - intros B E d H; simpl; auto.
  - intros B x E d H y [<- | Hy]; simpl; auto.
  - intros B l E d H; simpl; auto.
  - intros B f ps B' _ IH E d H. rewrite dafter_op. auto.
  - intros B x ps B' _ IH E d H. rewrite dafter_opvar. apply IH.
    intros y [<- | Hy]; simpl; auto.
  - intros B p1 p2 B1 B2 _ IH1 _ IH2 E d H y Hy. apply In_inter in Hy as [Hy1 Hy2].
    specialize (IH1 E d H y Hy1). specialize (IH2 E d H y Hy2). simpl.
    unfold dmeet. apply in_map_iff in IH1 as ([z k] & Ez & Hz). simpl in Ez; subst z.
    assert (Hl : exists k2, dlookup (dafter E d p2) y = Some k2).
    { apply in_map_iff in IH2 as ([z k2] & Ez & Hz2). simpl in Ez; subst z.
      eapply dlookup_some; eauto. }
    destruct Hl as [k2 Hk2]. apply in_map_iff. exists (y, min k k2). split; auto.
    apply in_flat_map. exists (y, k). split; auto. simpl. rewrite Hk2. left; auto.
  - intros B x p B1 _ IH E d H. simpl.
    assert (H1 : incl B1 (map fst (dafter (drem x E) d p))).
    { apply IH. intros y Hy. apply In_rem in Hy as [Hy Hxy]. specialize (H y Hy).
      apply in_map_iff in H as ([z k] & Ez & Hz). simpl in Ez; subst z.
      apply in_map_iff. exists (y, k). split; auto. apply filter_In. split; auto.
      simpl. apply negb_true_iff. apply String.eqb_neq. auto. }
    assert (H2 : incl (rem x B1) (map fst (drem x (dafter (drem x E) d p)))).
    { intros y Hy. apply In_rem in Hy as [Hy Hxy]. specialize (H1 y Hy).
      apply in_map_iff in H1 as ([z k] & Ez & Hz). simpl in Ez; subst z.
      apply in_map_iff. exists (y, k). split; auto. apply filter_In. split; auto.
      simpl. apply negb_true_iff. apply String.eqb_neq. auto. }
    destruct (mem x B) eqn:Em.
    + apply mem_In in Em. specialize (H x Em).
      assert (Hl : exists k, dlookup E x = Some k).
      { apply in_map_iff in H as ([z k] & Ez & Hz). simpl in Ez; subst z.
        eapply dlookup_some; eauto. }
      destruct Hl as [k Hk]. rewrite Hk. intros y [<- | Hy]; simpl; auto.
    + destruct (dlookup E x); [intros y Hy; simpl; right |]; auto.
  - intros B P xs d0 Hd Hlen E d H y Hy. simpl. rewrite map_app, map_map. simpl.
    rewrite map_id. apply in_app_or in Hy as [Hy | Hy]; apply in_or_app; auto.
  - intros B p g B1 _ IH Hg E d H. simpl. auto.
  - intros B p x q B1 B2 _ IH1 Hx _ IH2 E d H. simpl. apply IH2. apply IH1. auto.
  - intros B E d H; simpl; auto.
  - intros B E d H; simpl; auto.
  - intros B p ps B1 B2 _ IH _ IHa E d H. simpl. apply IHa. apply IH. auto.
Qed.

End Depth.

(** ** Bound variables hold subterms at least as deep as their depth says *)

Definition deep (V : value) (E : denv) (s : subst) : Prop :=
  forall x k, In (x, k) E -> exists w, lookup s x = Some w /\ vsize w + k <= vsize V.

Lemma deep_le : forall V E s t, deep V E s -> subst_le s t -> deep V E t.
Proof. unfold deep; intros V E s t H Hle x k Hx. destruct (H x k Hx) as (w & Hw & Hs); eauto. Qed.

Lemma incl_rem_drem : forall x B E,
  incl B (map fst E) -> incl (rem x B) (map fst (drem x E)).
Proof.
  intros x B E H y Hy. apply In_rem in Hy as [Hy Hxy]. specialize (H y Hy).
  apply in_map_iff in H as ([z k] & Ez & Hz). simpl in Ez; subst z.
  apply in_map_iff. exists (y, k). split; auto. apply filter_In. split; auto.
  simpl. apply negb_true_iff. apply String.eqb_neq. auto.
Qed.

Lemma In_drem : forall x y k E, In (y, k) (drem x E) -> In (y, k) E /\ x <> y.
Proof.
  intros x y k E H. apply filter_In in H as [H Hn]. simpl in Hn.
  apply negb_true_iff, String.eqb_neq in Hn. auto.
Qed.

Section Deep.
Variable D : program.
Variable bnd : string -> list string.
Hypothesis HD : wf_program D bnd.

Lemma interp_args_deep : forall m ps vs V B B' E d s r s',
  (forall p v B B' E s r s', In p ps -> In v vs -> wf D bnd B p B' -> incl B (map fst E) ->
     deep V E s -> m p v s = Ok r -> In s' r -> deep V (dafter D bnd E d p) s') ->
  wf_args D bnd B ps B' -> incl B (map fst E) -> deep V E s ->
  interp_args m ps vs s = Ok r -> In s' r -> deep V (dafter_args D bnd E d ps) s'.
Proof.
  induction ps as [| p ps IH]; intros [| v vs] V B B' E d s r s' Hm Hwf HB Hb H Hin;
    inversion Hwf; subst; simpl in H |- *.
  - inversion H; subst. destruct Hin as [<- | []]; auto.
  - inversion H; subst. destruct Hin as [<- | []]; auto.
  - inversion H; subst; contradiction.
  - unfold obind in H. destruct (m p v s) as [| r1] eqn:E1; try discriminate.
    destruct (flat_map_out_in _ _ _ _ H Hin) as (s1 & r2 & Hs1 & E2 & Hs').
    eapply IH with (B := B1); [| eauto | | | exact E2 | exact Hs'].
    + intros; eapply Hm; eauto; right; auto.
    + eapply dafter_dom; eauto.
    + eapply Hm; [left; reflexivity | left; reflexivity | eauto | eauto | eauto | exact E1 | exact Hs1].
Qed.

Lemma interp_deep : forall n p v V B B' E d s r s',
  wf D bnd B p B' -> incl B (map fst E) -> deep V E s -> vsize v + d <= vsize V ->
  interp D n p v s = Ok r -> In s' r -> deep V (dafter D bnd E d p) s'.
Proof.
  induction n as [| n IH]; intros p v V B B' E d s r s' Hwf HB Hb Hv H Hin; [discriminate |].
  destruct (interp_sound D (S n) p v s r s' H Hin) as [Hle _].
  inversion Hwf; subst; simpl in H.
  - inversion H; subst. destruct Hin as [<- | []]; auto.
  - destruct (bind_var s x v) as [s1|] eqn:Eb; simpl in H; inversion H; subst; [| contradiction].
    destruct Hin as [<- | []]. apply bind_var_sound in Eb as [Hle1 Hx].
    simpl. intros y k [Ey | Hy]; [inversion Ey; subst; eauto |]. eapply deep_le; eauto.
  - destruct (value_eqb v (VLit l)); inversion H; subst; [| contradiction].
    destruct Hin as [<- | []]; auto.
  - destruct v as [g vs | l]; [| inversion H; subst; contradiction].
    destruct (String.eqb f g && (length ps <=? length vs)); [| inversion H; subst; contradiction].
    rewrite dafter_op. eapply interp_args_deep; [| eauto | eauto | eauto | eauto | eauto].
    intros p0 v0 B0 B0' E0 s0 r0 s0' Hp Hv0 Hw HB0 Hs Ei Hi.
    eapply IH; [exact Hw | exact HB0 | exact Hs | | exact Ei | exact Hi].
    pose proof (vsize_arg g vs v0 Hv0). lia.
  - destruct v as [g vs | l]; [| inversion H; subst; contradiction].
    destruct (length ps <=? length vs); [| inversion H; subst; contradiction].
    destruct (bind_var s x (VLit (LStr g))) as [s1|] eqn:Eb; [| inversion H; subst; contradiction].
    apply bind_var_sound in Eb as [Hle1 Hx].
    rewrite dafter_opvar. eapply interp_args_deep; [| eauto | | | eauto | eauto].
    + intros p0 v0 B0 B0' E0 s0 r0 s0' Hp Hv0 Hw HB0 Hs Ei Hi.
      eapply IH; [exact Hw | exact HB0 | exact Hs | | exact Ei | exact Hi].
      pose proof (vsize_arg g vs v0 Hv0). lia.
    + intros y [<- | Hy]; simpl; auto.
    + intros y k [Ey | Hy].
      * inversion Ey; subst. exists (VLit (LStr g)). split; auto. simpl in *. lia.
      * eapply deep_le; eauto.
  - unfold oapp in H. destruct (interp D n p1 v s) as [| r1] eqn:E1; try discriminate.
    destruct (interp D n p2 v s) as [| r2] eqn:E2; try discriminate.
    inversion H; subst. intros y k Hy. rewrite dafter_alt in Hy. unfold dmeet in Hy.
    apply in_flat_map in Hy as ([z k1] & Hz & Hy). cbn [fst snd] in Hy.
    destruct (dlookup (dafter D bnd E d p2) z) as [k2|] eqn:Ek2; [| contradiction].
    destruct Hy as [Ey | []]. inversion Ey; subst.
    apply in_app_or in Hin as [Hin | Hin].
    + destruct (IH p1 v V B B1 E d s r1 s' H0 HB Hb Hv E1 Hin y k1 Hz) as (w & Hw & Hs).
      exists w; split; auto. lia.
    + destruct (IH p2 v V B B2 E d s r2 s' H1 HB Hb Hv E2 Hin y k2 (dlookup_In _ _ _ Ek2))
        as (w & Hw & Hs).
      exists w; split; auto. lia.
  - unfold omap in H. destruct (interp D n p0 v (remove s x)) as [| r1] eqn:Ei; try discriminate.
    inversion H; subst. apply in_map_iff in Hin as (s1 & <- & Hin).
    assert (Hb1 : deep V (dafter D bnd (drem x E) d p0) s1).
    { eapply IH; [eauto | apply incl_rem_drem; auto | | eauto | exact Ei | exact Hin].
      intros y k Hy. apply In_drem in Hy as [Hy Hxy]. rewrite lookup_remove.
      apply String.eqb_neq in Hxy. rewrite String.eqb_sym, Hxy. auto. }
    assert (Hr : forall y k, In (y, k) (drem x (dafter D bnd (drem x E) d p0)) ->
                 exists w, lookup (restore s1 x (lookup s x)) y = Some w /\ vsize w + k <= vsize V).
    { intros y k Hy. apply In_drem in Hy as [Hy Hxy]. rewrite lookup_restore.
      apply String.eqb_neq in Hxy. rewrite String.eqb_sym, Hxy. auto. }
    rewrite dafter_exists. cbv zeta.
    destruct (dlookup E x) as [k|] eqn:Ek; [| exact Hr].
    intros y k' [Ey | Hy]; [| apply Hr; exact Hy]. inversion Ey; subst.
    rewrite lookup_restore, String.eqb_refl. apply Hb. apply dlookup_In; auto.
  - rename H0 into Hd, H1 into Hlen.
    rewrite Hd, Hlen, Nat.eqb_refl in H. unfold omap in H.
    destruct (interp D n (def_body d0) v (frame_in s xs (def_params d0))) as [| r1] eqn:Ei;
      try discriminate.
    inversion H; subst. apply in_flat_map in Hin as (t & Ht & Hin).
    destruct (copy_back t xs (def_params d0) s) as [s1|] eqn:Ec; simpl in Hin; [| contradiction].
    destruct Hin as [<- | []].
    destruct (copy_back_sound _ _ _ _ _ Hlen Ec) as [Hle1 Hf].
    destruct (wf_program_lookup D bnd P d0 HD Hd) as (_ & _ & B2 & Hwb & Hincl).
    assert (Hbt : small v B2 t).
    { eapply (interp_small D bnd HD); [exact Hwb | | | exact Ei | exact Ht]; [intros y [] | lia]. }
    intros y k Hy. apply in_app_or in Hy as [Hy | Hy]; [| exact (deep_le V E s s1 Hb Hle1 y k Hy)].
    apply in_map_iff in Hy as (y' & Ey & Hy). inversion Ey; subst y' k.
    apply call_binds_In in Hy as (d' & z & Hd' & Hyz & Hz). rewrite Hd in Hd'.
    inversion Hd'; subst d'.
    destruct (Hbt z (Hincl z Hz)) as (w & Hw & Hs).
    exists w. split; [exact (Forall2_combine _ _ _ _ _ Hf Hyz w Hw) | lia].
  - unfold omap in H. destruct (interp D n p0 v s) as [| r1] eqn:Ei; try discriminate.
    inversion H; subst. apply filter_In in Hin as [Hin _]. rewrite dafter_guard.
    eapply IH; [eauto | exact HB | exact Hb | exact Hv | exact Ei | exact Hin].
  - unfold obind in H. destruct (interp D n p0 v s) as [| r1] eqn:Ei; try discriminate.
    destruct (flat_map_out_in _ _ _ _ H Hin) as (s1 & r2 & Hs1 & E2 & Hs').
    assert (Hb1 : deep V (dafter D bnd E d p0) s1)
      by (eapply IH; [eauto | exact HB | exact Hb | exact Hv | exact Ei | exact Hs1]).
    match goal with Hi : In x B1 |- _ => rename Hi into HxB end.
    pose proof (dafter_dom D bnd B p0 B1 H0 E d HB x HxB) as Hxd.
    apply in_map_iff in Hxd as ([z k] & Ez & Hz). simpl in Ez; subst z.
    destruct (dlookup_some _ _ _ Hz) as [k' Hk']. apply dlookup_In in Hk' as Hk''.
    destruct (Hb1 x k' Hk'') as (w & Hw & Hs).
    rewrite Hw in E2. rewrite dafter_then. cbv zeta. unfold ddepth. rewrite Hk'.
    eapply IH; [eauto | eapply dafter_dom; eauto | exact Hb1 | exact Hs | exact E2 | exact Hs'].
  - inversion H; subst; contradiction.
Qed.

End Deep.
(** ** The interpreter never runs out of the fuel of §6 on guarded programs *)

Lemma flat_map_out_total : forall f l,
  (forall a, In a l -> f a <> OutOfFuel) -> flat_map_out f l <> OutOfFuel.
Proof.
  induction l as [| a l IH]; simpl; intros H; [discriminate |].
  destruct (f a) as [| ra] eqn:Ea; [exfalso; apply (H a); auto |].
  destruct (flat_map_out f l) as [| rl] eqn:El; [exfalso; apply IH; auto | discriminate].
Qed.

Definition wsum (D : program) (rk : string -> nat) (keep : nat -> bool) : nat :=
  fold_right (fun b n => (if keep (rk (fst b)) then psize (def_body (snd b)) else 0) + n) 0 D.

Section Weights.
Variable rk : string -> nat.

Definition w_le (D : program) (r : nat) : nat := wsum D rk (fun k => k <=? r).
Definition w_lt (D : program) (r : nat) : nat := wsum D rk (fun k => k <? r).

Lemma wsum_le : forall D k1 k2, (forall k, k1 k = true -> k2 k = true) -> wsum D rk k1 <= wsum D rk k2.
Proof.
  intros D k1 k2 H. unfold wsum. induction D as [| b D' IHD]; simpl; auto.
  destruct (k1 (rk (fst b))) eqn:E1; [rewrite (H _ E1) |]; lia.
Qed.

Lemma wsum_dsize : forall D keep, wsum D rk keep <= dsize D.
Proof.
  intros D keep. unfold wsum, dsize. induction D as [| b D' IHD]; simpl; auto.
  destruct (keep (rk (fst b))); lia.
Qed.

Lemma w_lt_body : forall D P d, In (P, d) D -> w_lt D (rk P) + psize (def_body d) <= w_le D (rk P).
Proof.
  intros D P d Hin. unfold w_lt, w_le, wsum.
  induction D as [| b D' IHD]; simpl in *; [contradiction |].
  assert (Hb : (if rk (fst b) <? rk P then psize (def_body (snd b)) else 0) <=
               (if rk (fst b) <=? rk P then psize (def_body (snd b)) else 0)).
  { destruct (rk (fst b) <? rk P) eqn:E; [apply Nat.ltb_lt in E |]; auto with arith.
    rewrite (proj2 (Nat.leb_le _ _)); lia. }
  destruct Hin as [E | Hin].
  - subst b. simpl. rewrite Nat.ltb_irrefl, Nat.leb_refl.
    assert (wsum D' rk (fun k => k <? rk P) <= wsum D' rk (fun k => k <=? rk P)).
    { apply wsum_le. intros k Hk. apply Nat.ltb_lt in Hk. apply Nat.leb_le. lia. }
    unfold wsum in H. simpl in *. lia.
  - specialize (IHD Hin). lia.
Qed.

Lemma w_le_lt : forall D r r', r' < r -> w_le D r' <= w_lt D r.
Proof.
  intros D r r' H. apply wsum_le. intros k Hk. apply Nat.leb_le in Hk. apply Nat.ltb_lt. lia.
Qed.

End Weights.

Section Total.
Variable D : program.
Variable bnd : string -> list string.
Hypothesis HD : wf_program D bnd.

Lemma dcalls_then : forall E d p x q,
  dcalls D bnd E d (PThen p x q) =
  dcalls D bnd E d p ++ dcalls D bnd (dafter D bnd E d p) (ddepth (dafter D bnd E d p) x) q.
Proof. reflexivity. Qed.

(** What a pattern needs of the definitions it calls: a call at depth k is
    made on a value at least k smaller than [V]. *)
Definition callees_ok (cs : list (nat * string)) (V : value) (K : nat) : Prop :=
  forall k Q d w t m, In (k, Q) cs -> lookup_def D Q = Some d ->
  vsize w + k <= vsize V -> K <= m -> interp D m (def_body d) w t <> OutOfFuel.

Lemma callees_ok_incl : forall cs cs' V K,
  callees_ok cs V K -> incl cs' cs -> callees_ok cs' V K.
Proof. unfold callees_ok; intros; eauto. Qed.

Definition total_at (p : pat) : Prop :=
  forall E d V v B B' s n K,
  wf D bnd B p B' -> incl B (map fst E) -> deep V E s -> vsize v + d <= vsize V ->
  callees_ok (dcalls D bnd E d p) V K -> psize p + K <= n ->
  interp D n p v s <> OutOfFuel.

Lemma total_args : forall ps, Forall total_at ps ->
  forall V vs B B' E d s n K,
  wf_args D bnd B ps B' -> incl B (map fst E) -> deep V E s ->
  (forall w, In w vs -> vsize w + d <= vsize V) ->
  callees_ok (dcalls_args D bnd E d ps) V K ->
  (forall p, In p ps -> psize p + K <= n) ->
  interp_args (interp D n) ps vs s <> OutOfFuel.
Proof.
  induction 1 as [| p ps Hp _ IH]; intros V vs B B' E d s n K Hwf HB Hs Hvs Hc Hn;
    destruct vs as [| v vs]; simpl; try discriminate.
  inversion Hwf; subst. unfold obind.
  destruct (interp D n p v s) as [| r1] eqn:E1.
  - exfalso. eapply (Hp E d V v B B1 s n K); eauto.
    + apply Hvs; left; auto.
    + eapply callees_ok_incl; eauto. intros c Hc'. simpl. apply in_or_app; auto.
    + apply Hn; left; auto.
  - apply flat_map_out_total. intros s1 Hs1.
    apply (IH V vs B1 B' (dafter D bnd E d p) d s1 n K); auto.
    + eapply dafter_dom; eauto.
    + eapply (interp_deep D bnd HD); [eauto | eauto | eauto | | exact E1 | exact Hs1].
      apply Hvs; left; auto.
    + intros w Hw; apply Hvs; right; auto.
    + eapply callees_ok_incl; eauto. intros c Hc'. simpl. apply in_or_app; auto.
    + intros q Hq; apply Hn; right; auto.
Qed.

Lemma total_pat : forall p, total_at p.
Proof.
  induction p as [| x | l | f ps IH | x ps IH | p1 p2 IH1 IH2 | x p IH | P xs
                  | p g IH | p x q IH IHq | ] using pat_ind';
    unfold total_at; intros E d V v B B' s n K Hwf HB Hs Hv Hc Hn;
    (destruct n as [| n]; [simpl in Hn; lia |]); simpl; try discriminate;
    try (destruct (value_eqb v (VLit l)); discriminate).
  - (* f(p̄) *)
    destruct v as [g vs | l0]; [| discriminate].
    destruct (String.eqb f g && (length ps <=? length vs)); [| discriminate].
    inversion Hwf; subst. rewrite dcalls_op in Hc.
    match goal with Ha : wf_args _ _ _ _ _ |- _ =>
      apply (total_args ps IH V vs B B' E (S d) s n K Ha HB Hs) end.
    + intros w Hw. pose proof (vsize_arg g vs w Hw). lia.
    + exact Hc.
    + intros p Hp. pose proof (psize_arg ps p Hp). simpl in Hn. lia.
  - (* x(p̄) *)
    destruct v as [g vs | l0]; [| discriminate].
    destruct (length ps <=? length vs); [| discriminate].
    destruct (bind_var s x (VLit (LStr g))) as [s1|] eqn:Eb; [| discriminate].
    inversion Hwf; subst. apply bind_var_sound in Eb as [Hle1 Hx]. rewrite dcalls_opvar in Hc.
    match goal with Ha : wf_args _ _ _ _ _ |- _ =>
      apply (total_args ps IH V vs (x :: B) B' ((x, d) :: E) (S d) s1 n K Ha) end.
    + intros y [<- | Hy]; simpl; auto.
    + intros y k [Ey | Hy].
      * inversion Ey; subst. exists (VLit (LStr g)). split; auto. simpl in *. lia.
      * eapply deep_le; eauto.
    + intros w Hw. pose proof (vsize_arg g vs w Hw). lia.
    + exact Hc.
    + intros p Hp. pose proof (psize_arg ps p Hp). simpl in Hn. lia.
  - (* p1 | p2 *)
    inversion Hwf; subst. simpl in Hn, Hc. unfold oapp.
    destruct (interp D n p1 v s) eqn:E1.
    + intros _. apply (IH1 E d V v B B1 s n K); try assumption; [| lia].
      eapply callees_ok_incl; eauto. intros c Hc'; apply in_or_app; auto.
    + destruct (interp D n p2 v s) eqn:E2; [| discriminate].
      intros _. apply (IH2 E d V v B B2 s n K); try assumption; [| lia].
      eapply callees_ok_incl; eauto. intros c Hc'; apply in_or_app; auto.
  - (* ∃x. p *)
    inversion Hwf; subst. simpl in Hn, Hc. unfold omap.
    destruct (interp D n p v (remove s x)) eqn:Ei; [| discriminate].
    intros _. apply (IH (drem x E) d V v (rem x B) B1 (remove s x) n K);
      try assumption; [apply incl_rem_drem; auto | | lia].
    intros y k Hy. apply In_drem in Hy as [Hy Hxy]. rewrite lookup_remove.
    apply String.eqb_neq in Hxy. rewrite String.eqb_sym, Hxy. auto.
  - (* P(x̄) *)
    destruct (lookup_def D P) as [d0|] eqn:Ed; [| discriminate].
    destruct (length xs =? length (def_params d0)); [| discriminate].
    unfold omap.
    destruct (interp D n (def_body d0) v (frame_in s xs (def_params d0))) eqn:Ei; [| discriminate].
    exfalso. eapply Hc; [simpl; left; reflexivity | exact Ed | exact Hv | | exact Ei].
    simpl in Hn. lia.
  - (* p ? g *)
    inversion Hwf; subst. simpl in Hn, Hc. unfold omap.
    destruct (interp D n p v s) eqn:Ei; [| discriminate].
    intros _. apply (IH E d V v B B' s n K); try assumption. lia.
  - (* p ; x ≍ q *)
    inversion Hwf; subst. rewrite dcalls_then in Hc. simpl in Hn. unfold obind.
    destruct (interp D n p v s) as [| r1] eqn:Ei.
    + intros _. apply (IH E d V v B B1 s n K); try assumption; [| lia].
      eapply callees_ok_incl; eauto. intros c Hc'; apply in_or_app; auto.
    + apply flat_map_out_total. intros s1 Hs1.
      assert (Hsm : deep V (dafter D bnd E d p) s1)
        by (eapply (interp_deep D bnd HD); [eauto | exact HB | exact Hs | exact Hv | exact Ei | exact Hs1]).
      match goal with Hi : In x B1 |- _ => rename Hi into HxB end.
      assert (HB1 : incl B1 (map fst (dafter D bnd E d p))) by (eapply dafter_dom; eauto).
      pose proof (HB1 x HxB) as Hxd.
      apply in_map_iff in Hxd as ([z k] & Ez & Hz). simpl in Ez; subst z.
      destruct (dlookup_some _ _ _ Hz) as [k' Hk'].
      destruct (Hsm x k' (dlookup_In _ _ _ Hk')) as (w & Hw & Hws). simpl. rewrite Hw.
      apply (IHq (dafter D bnd E d p) (ddepth (dafter D bnd E d p) x) V w B1 B' s1 n K);
        try assumption; [unfold ddepth; rewrite Hk'; exact Hws | | lia].
      eapply callees_ok_incl; eauto. intros c Hc'; apply in_or_app; auto.
Qed.

(** ** The measure: value size first, then the rank of the definition *)

Variable rk : string -> nat.
Hypothesis HG : guarded D bnd rk.

Lemma body_total : forall s r P d, lookup_def D P = Some d -> rk P = r ->
  forall w t m, vsize w <= s -> s * dsize D + w_le rk D r <= m ->
  interp D m (def_body d) w t <> OutOfFuel.
Proof.
  intros s. induction s as [s IHs] using lt_wf_ind.
  intros r. induction r as [r IHr] using lt_wf_ind.
  intros P d Hd Hr w t m Hw Hm.
  pose proof (lookup_def_In D P d Hd) as Hin.
  destruct (wf_program_lookup D bnd P d HD Hd) as (_ & _ & B2 & Hwb & _).
  eapply (total_pat (def_body d) [] 0 w w [] B2 t m (s * dsize D + w_lt rk D r)); eauto.
  - intros y [].
  - intros y k [].
  - lia.
  - intros [| k] Q e w' t' m' HQ He Hw' Hm'.
    + (* a call at depth 0: a definition of smaller rank *)
      assert (Hlt : rk Q < r) by (subst r; eapply HG; eauto).
      eapply (IHr (rk Q) Hlt Q e He eq_refl w' t' m'); [lia |].
      pose proof (w_le_lt rk D r (rk Q) Hlt). lia.
    + (* a call under an operator: a smaller value *)
      eapply (IHs (vsize w') ltac:(lia) (rk Q) Q e He eq_refl w' t' m' (le_n _)).
      pose proof (wsum_dsize rk D (fun k => k <=? rk Q)).
      assert (vsize w' * dsize D + dsize D <= s * dsize D) by nia.
      unfold w_le in *. lia.
  - pose proof (w_lt_body rk D P d Hin). subst r. lia.
Qed.

Lemma small_deep : forall V B s, small V B s -> deep V (map (fun x => (x, 0)) B) s.
Proof.
  intros V B s H x k Hx. apply in_map_iff in Hx as (y & Ey & Hy). inversion Ey; subst.
  destruct (H x Hy) as (w & Hw & Hs). exists w. split; auto. lia.
Qed.

(** Totality (§6): with the fuel [(size(v) + 1) × (size(Δ) + size(p))] the
    interpreter never runs out of fuel on a well-formed, guarded program. *)
Theorem interp_total_guarded : forall p v B B' s n,
  wf D bnd B p B' -> small v B s -> fuel_bound D p v <= n ->
  exists r, interp D n p v s = Ok r.
Proof.
  intros p v B B' s n Hwf Hs Hn.
  destruct (interp D n p v s) as [| r] eqn:E; [| eauto].
  exfalso. eapply (total_pat p (map (fun x => (x, 0)) B) 0 v v B B' s n
                     (vsize v * dsize D + dsize D)); eauto.
  - intros y Hy. rewrite map_map. simpl. rewrite map_id. exact Hy.
  - apply small_deep; auto.
  - lia.
  - intros [| k] Q e w' t' m' HQ He Hw' Hm'.
    + eapply (body_total (vsize v) (rk Q) Q e He eq_refl w' t' m'); [lia |].
      pose proof (wsum_dsize rk D (fun k => k <=? rk Q)). unfold w_le in *. lia.
    + eapply (body_total (vsize w') (rk Q) Q e He eq_refl w' t' m' (le_n _)).
      pose proof (wsum_dsize rk D (fun k => k <=? rk Q)).
      assert (vsize w' * dsize D + dsize D <= vsize v * dsize D) by nia.
      unfold w_le in *. lia.
  - unfold fuel_bound in Hn. nia.
Qed.

End Total.

(** ** Consequences: total and complete with the fuel of §6 *)

Lemma small_binds : forall V B s, small V B s -> binds B s.
Proof. unfold small, binds; intros V B s H x Hx. destruct (H x Hx) as (w & Hw & _); eauto. Qed.

(** Completeness at the fuel of §6 (no "for fuel large enough" left). *)
Theorem interp_complete_guarded : forall D bnd rk p v B B' s t,
  wf_program D bnd -> guarded D bnd rk -> wf D bnd B p B' -> small v B s ->
  subst_le s t -> sem D t v p ->
  exists r s', interp D (fuel_bound D p v) p v s = Ok r /\ In s' r /\ subst_le s' t.
Proof.
  intros D bnd rk p v B B' s t HD HG Hwf Hs Hle Hsem.
  destruct (interp_total_guarded D bnd HD rk HG p v B B' s (fuel_bound D p v) Hwf Hs (le_n _))
    as [r Hr].
  destruct (interp_complete D bnd B B' p v s t _ r HD Hwf (small_binds _ _ _ Hs) Hle Hsem Hr)
    as (s' & Hin & Hle').
  eauto.
Qed.

(** The checker of guarded recursion, with the inferred table and ranks. *)
Definition check_guarded (D : program) : bool :=
  let bnd := tbl_get [] (binds_table D (binds_rounds D)) in
  let ranks := tbl_get 0 (rank_table D bnd (rank_rounds D)) in
  guardedb D bnd ranks.

(** The same for what the extracted checkers accept: a program that passes
    [check_program] and [check_guarded], and a pattern that [check_query]
    accepts, never run out of fuel, whatever the value and substitution. *)
Theorem extracted_interp_total : forall D p v s,
  check_program D = true -> check_guarded D = true -> check_query D p = true ->
  exists r, interp D (fuel_bound D p v) p v s = Ok r.
Proof.
  intros D p v s HD HG Hp.
  apply check_program_sound in HD. unfold check_guarded in HG. cbv zeta in HG.
  apply guardedb_guarded in HG.
  apply check_query_some in Hp as [B' Hp]. apply check_wf in Hp.
  eapply interp_total_guarded; eauto. intros x [].
Qed.

(** ** The checker of guarded recursion accepts every guarded program *)

Section Ranks.
Variable D : program.
Variable bnd : string -> list string.

Definition rt (k : nat) : string -> nat := tbl_get 0 (rank_table D bnd k).

Lemma rt_S : forall k P,
  rt (S k) P = match lookup_def D P with
               | Some d => rank_step D bnd (rank_table D bnd k) (def_body d)
               | None => 0
               end.
Proof.
  intros k P. unfold rt. simpl.
  exact (tbl_get_map D 0 (fun _ d => rank_step D bnd (rank_table D bnd k) (def_body d)) P).
Qed.

Lemma rank_step_ge : forall t body Q, In (0, Q) (dcalls D bnd [] 0 body) ->
  S (tbl_get 0 t Q) <= rank_step D bnd t body.
Proof.
  intros t body Q. unfold rank_step. induction (dcalls D bnd [] 0 body) as [| [k R] cs IH];
    cbn [fold_right fst snd In]; intros H; [contradiction |].
  destruct H as [E | H]; [inversion E; subst; apply Nat.le_max_l |].
  specialize (IH H). destruct k; [| exact IH].
  etransitivity; [exact IH | apply Nat.le_max_r].
Qed.

Lemma rank_step_le : forall t body m,
  (forall Q, In (0, Q) (dcalls D bnd [] 0 body) -> S (tbl_get 0 t Q) <= m) ->
  rank_step D bnd t body <= m.
Proof.
  intros t body m. unfold rank_step. induction (dcalls D bnd [] 0 body) as [| [k R] cs IH];
    cbn [fold_right fst snd In]; intros H; [lia |].
  assert (IH' : fold_right (fun (c : nat * string) (n : nat) =>
            match fst c with 0 => max (S (tbl_get 0 t (snd c))) n | S _ => n end) 0 cs <= m)
    by (apply IH; intros; apply H; auto).
  destruct k; [| exact IH']. specialize (H R (or_introl eq_refl)).
  apply Nat.max_lub; auto.
Qed.

Lemma rank_step_mono : forall t1 t2 body,
  (forall Q, tbl_get 0 t1 Q <= tbl_get 0 t2 Q) -> rank_step D bnd t1 body <= rank_step D bnd t2 body.
Proof.
  intros t1 t2 body H. unfold rank_step.
  induction (dcalls D bnd [] 0 body) as [| [k R] cs IH]; cbn [fold_right fst snd]; [lia |].
  destruct k; [| exact IH]. apply Nat.max_le_compat; [specialize (H R); lia | exact IH].
Qed.

Lemma rt_mono : forall k P, rt k P <= rt (S k) P.
Proof.
  induction k as [| k IH]; intros P; [unfold rt; simpl; lia |].
  rewrite (rt_S (S k) P), (rt_S k P). destruct (lookup_def D P); [| lia].
  apply rank_step_mono. exact IH.
Qed.

Definition below_count (rk : string -> nat) (P : string) : nat :=
  length (filter (fun b => rk (fst b) <? rk P) D).

Lemma below_count_lt : forall rk P Q e, In (Q, e) D -> rk Q < rk P ->
  below_count rk Q < below_count rk P.
Proof.
  intros rk P Q e Hin Hlt. unfold below_count.
  induction D as [| [R f] D' IH]; simpl in *; [contradiction |].
  destruct Hin as [E | Hin].
  - inversion E; subst. rewrite Nat.ltb_irrefl. apply Nat.ltb_lt in Hlt. rewrite Hlt. simpl.
    apply le_n_S. clear -Hlt. apply Nat.ltb_lt in Hlt. induction D' as [| b D' IH]; simpl; auto.
    destruct (rk (fst b) <? rk Q) eqn:E1; simpl.
    + apply Nat.ltb_lt in E1. assert (E2 : rk (fst b) <? rk P = true) by (apply Nat.ltb_lt; lia).
      rewrite E2. simpl. lia.
    + destruct (rk (fst b) <? rk P); simpl; lia.
  - specialize (IH Hin). destruct (rk R <? rk Q) eqn:E1; simpl.
    + apply Nat.ltb_lt in E1. assert (E2 : rk R <? rk P = true) by (apply Nat.ltb_lt; lia).
      rewrite E2. simpl. lia.
    + destruct (rk R <? rk P); simpl; lia.
Qed.

Lemma below_count_le : forall rk P, below_count rk P <= length D.
Proof.
  intros rk P. unfold below_count. induction D as [| b D' IH]; simpl; auto.
  destruct (rk (fst b) <? rk P); simpl; lia.
Qed.

Hypothesis Hnames : NoDup (map fst D).
Variable rk : string -> nat.
Hypothesis HG : guarded D bnd rk.

Lemma rt_bound : forall k P, rt k P <= S (below_count rk P).
Proof.
  induction k as [| k IH]; intros P; [unfold rt; simpl; lia |].
  rewrite rt_S. destruct (lookup_def D P) as [d|] eqn:Hd; [| lia].
  apply rank_step_le. intros Q HQ.
  assert (Hlt : rk Q < rk P) by (eapply HG; [apply lookup_def_In; eauto | eauto | auto]).
  fold (rt k Q). destruct (lookup_def D Q) as [e|] eqn:He.
  - pose proof (below_count_lt rk P Q e (lookup_def_In D Q e He) Hlt). specialize (IH Q). lia.
  - assert (rt k Q = 0).
    { destruct k; [unfold rt; reflexivity | rewrite rt_S, He; reflexivity]. }
    lia.
Qed.

Definition rsum (L : program) (k : nat) : nat := fold_right (fun b n => rt k (fst b) + n) 0 L.

Lemma rsum_mono : forall L k, rsum L k <= rsum L (S k).
Proof. induction L as [| b L IH]; intros k; simpl; [lia |]. pose proof (rt_mono k (fst b)). specialize (IH k). lia. Qed.

Lemma rsum_strict : forall L k b, In b L -> rt (S k) (fst b) <> rt k (fst b) -> rsum L k < rsum L (S k).
Proof.
  induction L as [| c L IH]; intros k b Hb Hne; simpl in *; [contradiction |].
  pose proof (rt_mono k (fst c)). pose proof (rsum_mono L k).
  destruct Hb as [<- | Hb]; [lia |]. specialize (IH k b Hb Hne). lia.
Qed.

Lemma rsum_bound : forall L k, rsum L k <= length L * S (length D).
Proof.
  induction L as [| b L IH]; intros k; simpl; [lia |].
  pose proof (rt_bound k (fst b)). pose proof (below_count_le rk (fst b)). specialize (IH k). lia.
Qed.

Lemma forallb_false : forall {A : Type} (f : A -> bool) l,
  forallb f l = false -> exists x, In x l /\ f x = false.
Proof.
  induction l as [| a l IH]; simpl; intros H; [discriminate |].
  destruct (f a) eqn:Ea; simpl in H; [destruct (IH H) as (x & Hx & Fx); eauto | eauto].
Qed.

Definition rstableb (k : nat) : bool := forallb (fun b => rt (S k) (fst b) =? rt k (fst b)) D.

Lemma rstableb_all : forall k, rstableb k = true -> forall P, rt (S k) P = rt k P.
Proof.
  intros k H P. destruct (lookup_def D P) as [d|] eqn:Hd.
  - unfold rstableb in H. rewrite forallb_forall in H.
    specialize (H (P, d) (lookup_def_In D P d Hd)). apply Nat.eqb_eq in H. exact H.
  - rewrite rt_S, Hd. destruct k; [reflexivity | rewrite rt_S, Hd; reflexivity].
Qed.

Lemma rstableb_persists : forall k, rstableb k = true -> rstableb (S k) = true.
Proof.
  intros k H. unfold rstableb. apply forallb_forall. intros [P d] _. simpl. apply Nat.eqb_eq.
  rewrite (rt_S (S k) P), (rt_S k P). destruct (lookup_def D P) as [e|]; auto.
  pose proof (rstableb_all k H) as Hall.
  apply Nat.le_antisymm; apply rank_step_mono; intros Q; fold (rt (S k) Q); fold (rt k Q);
    rewrite Hall; lia.
Qed.

Lemma rstable_at_rounds : rstableb (rank_rounds D) = true.
Proof.
  destruct (rstableb (rank_rounds D)) eqn:E; auto. exfalso.
  assert (Hnot : forall j, j <= rank_rounds D -> rstableb j = false).
  { intros j Hj. destruct (rstableb j) eqn:Ej; auto.
    assert (forall m, rstableb (j + m) = true) as Hm.
    { induction m; [rewrite Nat.add_0_r; auto | rewrite Nat.add_succ_r; apply rstableb_persists; auto]. }
    specialize (Hm (rank_rounds D - j)).
    replace (j + (rank_rounds D - j)) with (rank_rounds D) in Hm by lia. congruence. }
  assert (Hinc : forall j, j <= S (rank_rounds D) -> j <= rsum D j).
  { induction j as [| j IH]; intros Hj; [lia |].
    specialize (IH ltac:(lia)). pose proof (Hnot j ltac:(lia)) as Hj'.
    unfold rstableb in Hj'. apply forallb_false in Hj' as ((P, d) & Hin & Hne).
    apply Nat.eqb_neq in Hne. pose proof (rsum_strict D j (P, d) Hin Hne). lia. }
  specialize (Hinc (S (rank_rounds D)) (le_n _)).
  pose proof (rsum_bound D (S (rank_rounds D))). unfold rank_rounds in *. lia.
Qed.

(** With the ranks of the last round, every call at depth 0 goes down. *)
Lemma guardedb_rounds : guardedb D bnd (rt (rank_rounds D)) = true.
Proof.
  apply guardedb_guarded. intros P d k Q Hin HQ Hk. subst k.
  pose proof (lookup_def_nodup D Hnames P d Hin) as Hd.
  rewrite <- (rstableb_all _ rstable_at_rounds P). rewrite rt_S, Hd.
  pose proof (rank_step_ge (rank_table D bnd (rank_rounds D)) (def_body d) Q HQ) as H.
  unfold rt. lia.
Qed.

End Ranks.

(** §5's guarded recursion as a checker agrees with its relation (for the
    table of always-bound parameters that [check_program] infers). *)
Theorem check_guarded_wf : forall D, check_program D = true ->
  (check_guarded D = true <-> exists rk, guarded D (infer_binds D) rk).
Proof.
  intros D HD. split.
  - intros H. unfold check_guarded in H. cbv zeta in H. apply guardedb_guarded in H. eauto.
  - intros [rk HG]. apply check_program_sound in HD.
    unfold check_guarded. cbv zeta.
    exact (guardedb_rounds D (infer_binds D) (proj1 HD) rk HG).
Qed.
