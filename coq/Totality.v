(** * Guarded programs: the fuel bound of §6 makes the interpreter total. *)

From Coq Require Import String ZArith List Bool Arith Lia.
From PyPM Require Import Syntax Semantics WellFormed Interp InterpProof.
Import ListNotations.

(** ** Guarded recursion *)

(** [calls g p]: the calls in [p], each with a flag that says whether it sits
    under an operator pattern ([g] is the flag at the root of [p]). The [q] of
    [p ; x ≍ q] starts unflagged again: [q] is matched against the value of
    [x], which need not be smaller than the value matched by [p ; x ≍ q]. *)
Fixpoint calls (g : bool) (p : pat) {struct p} : list (bool * string) :=
  let fix calls_list (ps : list pat) : list (bool * string) :=
      match ps with
      | [] => []
      | q :: qs => calls true q ++ calls_list qs
      end in
  match p with
  | POp _ ps | POpVar _ ps => calls_list ps
  | PAlt p1 p2 => calls g p1 ++ calls g p2
  | PExists _ p | PGuard p _ => calls g p
  | PCall P _ => [(g, P)]
  | PThen p _ q => calls g p ++ calls false q
  | _ => []
  end.

Lemma calls_list_eq : forall ps,
  (fix calls_list (ps : list pat) : list (bool * string) :=
      match ps with
      | [] => []
      | q :: qs => calls true q ++ calls_list qs
      end) ps = flat_map (calls true) ps.
Proof. induction ps; simpl; congruence. Qed.

(** A program is guarded by a ranking [rk] when every call that is not under
    an operator goes to a definition of smaller rank: every cycle of calls
    then passes under an operator, and so consumes part of the value. *)
Definition guarded (D : program) (rk : string -> nat) : Prop :=
  forall P d Q, In (P, d) D -> In (false, Q) (calls false (def_body d)) -> rk Q < rk P.

Definition guardedb (D : program) (rk : string -> nat) : bool :=
  forallb (fun b => forallb (fun c => fst c || (rk (snd c) <? rk (fst b)))
                            (calls false (def_body (snd b)))) D.

Lemma guardedb_guarded : forall D rk, guardedb D rk = true <-> guarded D rk.
Proof.
  unfold guardedb, guarded; intros D rk. rewrite forallb_forall. split.
  - intros H P d Q Hin Hc. specialize (H (P, d) Hin). rewrite forallb_forall in H.
    specialize (H (false, Q) Hc). simpl in H. apply Nat.ltb_lt; auto.
  - intros H [P d] Hin. rewrite forallb_forall. intros [[|] Q] Hc; simpl; auto.
    apply Nat.ltb_lt. eapply H; eauto.
Qed.

(** Ranks by iteration: one more than the largest rank of an unguarded callee,
    as a table by name recomputed [length D + 1] times. *)
Definition rank_step (t : list (string * nat)) (body : pat) : nat :=
  fold_right (fun (c : bool * string) (n : nat) =>
                if fst c then n else max (S (tbl_get 0 t (snd c))) n) 0 (calls false body).

Fixpoint rank_table (D : program) (k : nat) : list (string * nat) :=
  match k with
  | O => []
  | S k => let t := rank_table D k in map (fun b => (fst b, rank_step t (def_body (snd b)))) D
  end.

Definition infer_ranks (D : program) : string -> nat := tbl_get 0 (rank_table D (S (length D))).

(** The checker of guarded recursion. *)
Definition check_guarded (D : program) : bool :=
  let t := rank_table D (S (length D)) in guardedb D (tbl_get 0 t).

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

(** ** The interpreter never runs out of the fuel of §6 on guarded programs *)

Lemma flat_map_out_total : forall f l,
  (forall a, In a l -> f a <> OutOfFuel) -> flat_map_out f l <> OutOfFuel.
Proof.
  induction l as [| a l IH]; simpl; intros H; [discriminate |].
  destruct (f a) as [| ra] eqn:Ea; [exfalso; apply (H a); auto |].
  destruct (flat_map_out f l) as [| rl] eqn:El; [exfalso; apply IH; auto | discriminate].
Qed.

Definition mode_ok (g : bool) (v V : value) : Prop :=
  if g then vsize v < vsize V else vsize v <= vsize V.

Lemma mode_ok_le : forall g v V, mode_ok g v V -> vsize v <= vsize V.
Proof. unfold mode_ok; intros [|] v V H; lia. Qed.

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

(** What a pattern needs of the definitions it calls: guarded calls are made
    on values smaller than [V], unguarded ones on values no larger. *)
Definition callees_ok (cs : list (bool * string)) (V : value) (K : nat) : Prop :=
  forall b Q d w t m, In (b, Q) cs -> lookup_def D Q = Some d ->
  mode_ok b w V -> K <= m -> interp D m (def_body d) w t <> OutOfFuel.

Lemma callees_ok_incl : forall cs cs' V K,
  callees_ok cs V K -> incl cs' cs -> callees_ok cs' V K.
Proof. unfold callees_ok; intros; eauto. Qed.

Definition total_at (p : pat) : Prop :=
  forall g V v B B' s n K,
  wf D bnd B p B' -> small V B s -> mode_ok g v V ->
  callees_ok (calls g p) V K -> psize p + K <= n ->
  interp D n p v s <> OutOfFuel.

Lemma total_args : forall ps, Forall total_at ps ->
  forall V vs B B' s n K,
  wf_args D bnd B ps B' -> small V B s -> (forall w, In w vs -> vsize w < vsize V) ->
  callees_ok (flat_map (calls true) ps) V K ->
  (forall p, In p ps -> psize p + K <= n) ->
  interp_args (interp D n) ps vs s <> OutOfFuel.
Proof.
  induction 1 as [| p ps Hp _ IH]; intros V vs B B' s n K Hwf Hs Hvs Hc Hn;
    destruct vs as [| v vs]; simpl; try discriminate.
  inversion Hwf; subst. unfold obind.
  destruct (interp D n p v s) as [| r1] eqn:E1.
  - exfalso. eapply (Hp true V v B B1 s n K); eauto.
    + unfold mode_ok. apply Hvs; left; auto.
    + eapply callees_ok_incl; eauto. intros c Hc'. simpl. apply in_or_app; auto.
    + apply Hn; left; auto.
  - apply flat_map_out_total. intros s1 Hs1.
    apply (IH V vs B1 B' s1 n K); auto.
    + eapply interp_small; [eauto | eauto | eauto | | exact E1 | exact Hs1].
      pose proof (Hvs v (or_introl eq_refl)). lia.
    + intros w Hw; apply Hvs; right; auto.
    + eapply callees_ok_incl; eauto. intros c Hc'. simpl. apply in_or_app; auto.
    + intros q Hq; apply Hn; right; auto.
Qed.

Lemma total_pat : forall p, total_at p.
Proof.
  induction p as [| x | l | f ps IH | x ps IH | p1 p2 IH1 IH2 | x p IH | P xs
                  | p g IH | p x q IH IHq | ] using pat_ind';
    unfold total_at; intros md V v B B' s n K Hwf Hs Hv Hc Hn;
    (destruct n as [| n]; [simpl in Hn; lia |]); simpl; try discriminate;
    try (destruct (value_eqb v (VLit l)); discriminate).
  - (* f(p̄) *)
    destruct v as [g vs | l0]; [| discriminate].
    destruct (String.eqb f g && (length ps <=? length vs)); [| discriminate].
    inversion Hwf; subst.
    match goal with Ha : wf_args _ _ _ _ _ |- _ => apply (total_args ps IH V vs B B' s n K Ha Hs) end.
    + intros w Hw. pose proof (vsize_arg g vs w Hw). pose proof (mode_ok_le _ _ _ Hv). lia.
    + simpl in Hc. rewrite ?calls_list_eq in Hc. exact Hc.
    + intros p Hp. pose proof (psize_arg ps p Hp). simpl in Hn. lia.
  - (* x(p̄) *)
    destruct v as [g vs | l0]; [| discriminate].
    destruct (length ps <=? length vs); [| discriminate].
    destruct (bind_var s x (VLit (LStr g))) as [s1|] eqn:Eb; [| discriminate].
    inversion Hwf; subst. apply bind_var_sound in Eb as [Hle1 Hx].
    match goal with Ha : wf_args _ _ _ _ _ |- _ =>
      apply (total_args ps IH V vs (x :: B) B' s1 n K Ha) end.
    + intros y [<- | Hy].
      * exists (VLit (LStr g)). split; auto. apply vsize_pos.
      * eapply small_le; eauto.
    + intros w Hw. pose proof (vsize_arg g vs w Hw). pose proof (mode_ok_le _ _ _ Hv). lia.
    + simpl in Hc. rewrite ?calls_list_eq in Hc. exact Hc.
    + intros p Hp. pose proof (psize_arg ps p Hp). simpl in Hn. lia.
  - (* p1 | p2 *)
    inversion Hwf; subst. simpl in Hn, Hc. unfold oapp.
    destruct (interp D n p1 v s) eqn:E1.
    + intros _. apply (IH1 md V v B B1 s n K); [assumption | assumption | assumption | | lia | assumption].
      eapply callees_ok_incl; eauto. intros c Hc'; apply in_or_app; auto.
    + destruct (interp D n p2 v s) eqn:E2; [| discriminate].
      intros _. apply (IH2 md V v B B2 s n K); [assumption | assumption | assumption | | lia | assumption].
      eapply callees_ok_incl; eauto. intros c Hc'; apply in_or_app; auto.
  - (* ∃x. p *)
    inversion Hwf; subst. simpl in Hn, Hc. unfold omap.
    destruct (interp D n p v (remove s x)) eqn:E; [| discriminate].
    intros _. apply (IH md V v (rem x B) B1 (remove s x) n K); [assumption | | assumption | assumption | lia
                                                   | assumption].
    intros y Hy. apply In_rem in Hy as [Hy Hxy]. rewrite lookup_remove.
    apply String.eqb_neq in Hxy. rewrite String.eqb_sym, Hxy. auto.
  - (* P(x̄) *)
    destruct (lookup_def D P) as [d|] eqn:Ed; [| discriminate].
    destruct (length xs =? length (def_params d)); [| discriminate].
    unfold omap.
    destruct (interp D n (def_body d) v (frame_in s xs (def_params d))) eqn:E; [| discriminate].
    exfalso. eapply Hc; [simpl; left; reflexivity | exact Ed | exact Hv | | exact E].
    simpl in Hn. lia.
  - (* p ? g *)
    inversion Hwf; subst. simpl in Hn, Hc. unfold omap.
    destruct (interp D n p v s) eqn:E; [| discriminate].
    intros _. apply (IH md V v B B' s n K); [assumption | assumption | assumption | assumption | lia
                                  | assumption].
  - (* p ; x ≍ q *)
    inversion Hwf; subst. simpl in Hn, Hc. unfold obind.
    destruct (interp D n p v s) as [| r1] eqn:E.
    + intros _. apply (IH md V v B B1 s n K); [assumption | assumption | assumption | | lia | assumption].
      eapply callees_ok_incl; eauto. intros c Hc'; apply in_or_app; auto.
    + apply flat_map_out_total. intros s1 Hs1.
      assert (Hsm : small V B1 s1).
      { eapply interp_small; [eauto | eauto | eauto | | exact E | exact Hs1].
        apply (mode_ok_le _ _ _ Hv). }
      match goal with Hi : In x B1 |- _ => rename Hi into HxB end.
      destruct (Hsm x HxB) as (w & Hw & Hws). simpl. rewrite Hw.
      apply (IHq false V w B1 B' s1 n K); [assumption | assumption | exact Hws | | lia].
      eapply callees_ok_incl; eauto. intros c Hc'; apply in_or_app; auto.
Qed.

(** ** The measure: value size first, then the rank of the definition *)

Variable rk : string -> nat.
Hypothesis HG : guarded D rk.

Lemma body_total : forall s r P d, lookup_def D P = Some d -> rk P = r ->
  forall w t m, vsize w <= s -> s * dsize D + w_le rk D r <= m ->
  interp D m (def_body d) w t <> OutOfFuel.
Proof.
  intros s. induction s as [s IHs] using lt_wf_ind.
  intros r. induction r as [r IHr] using lt_wf_ind.
  intros P d Hd Hr w t m Hw Hm.
  pose proof (lookup_def_In D P d Hd) as Hin.
  destruct (wf_program_lookup D bnd P d HD Hd) as (_ & _ & B2 & Hwb & _).
  eapply (total_pat (def_body d) false w w [] B2 t m (s * dsize D + w_lt rk D r)); eauto.
  - intros y [].
  - unfold mode_ok; lia.
  - intros [|] Q e w' t' m' HQ He Hw' Hm'; unfold mode_ok in Hw'.
    + (* a guarded call: a smaller value *)
      eapply (IHs (vsize w') ltac:(lia) (rk Q) Q e He eq_refl w' t' m' (le_n _)).
      pose proof (w_le_lt rk D (S (rk Q)) (rk Q) ltac:(lia)).
      pose proof (wsum_dsize rk D (fun k => k <=? rk Q)).
      assert (vsize w' * dsize D + dsize D <= s * dsize D) by nia.
      unfold w_le in *. lia.
    + (* an unguarded call: a definition of smaller rank *)
      assert (Hlt : rk Q < r) by (subst r; eapply HG; eauto).
      eapply (IHr (rk Q) Hlt Q e He eq_refl w' t' m'); [lia |].
      pose proof (w_le_lt rk D r (rk Q) Hlt). lia.
  - pose proof (w_lt_body rk D P d Hin). subst r. lia.
Qed.

(** Totality (§6): with the fuel [(size(v) + 1) × (size(Δ) + size(p))] the
    interpreter never runs out of fuel on a well-formed, guarded program. *)
Theorem interp_total_guarded : forall p v B B' s n,
  wf D bnd B p B' -> small v B s -> fuel_bound D p v <= n ->
  exists r, interp D n p v s = Ok r.
Proof.
  intros p v B B' s n Hwf Hs Hn.
  destruct (interp D n p v s) as [| r] eqn:E; [| eauto].
  exfalso. eapply (total_pat p false v v B B' s n (vsize v * dsize D + dsize D)); eauto.
  - unfold mode_ok; lia.
  - intros [|] Q e w' t' m' HQ He Hw' Hm'; unfold mode_ok in Hw'.
    + eapply (body_total (vsize w') (rk Q) Q e He eq_refl w' t' m' (le_n _)).
      pose proof (wsum_dsize rk D (fun k => k <=? rk Q)).
      assert (vsize w' * dsize D + dsize D <= vsize v * dsize D) by nia.
      unfold w_le in *. lia.
    + eapply (body_total (vsize v) (rk Q) Q e He eq_refl w' t' m' Hw').
      pose proof (wsum_dsize rk D (fun k => k <=? rk Q)). unfold w_le in *. lia.
  - unfold fuel_bound in Hn. nia.
Qed.

End Total.

(** ** Consequences: total and complete with the fuel of §6 *)

Lemma small_binds : forall V B s, small V B s -> binds B s.
Proof. unfold small, binds; intros V B s H x Hx. destruct (H x Hx) as (w & Hw & _); eauto. Qed.

(** Completeness at the fuel of §6 (no "for fuel large enough" left). *)
Theorem interp_complete_guarded : forall D bnd rk p v B B' s t,
  wf_program D bnd -> guarded D rk -> wf D bnd B p B' -> small v B s ->
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

(** The same for what the extracted checkers accept: a program that passes
    [check_program] and [check_guarded], and a pattern that [check] accepts
    from B = ∅, never runs out of fuel, whatever the value and substitution. *)
Theorem extracted_interp_total : forall D p v s,
  check_program D = true -> check_guarded D = true -> check_query D p = true ->
  exists r, interp D (fuel_bound D p v) p v s = Ok r.
Proof.
  intros D p v s HD HG Hp.
  apply check_program_sound in HD. apply guardedb_guarded in HG.
  apply check_query_some in Hp as [B' Hp]. apply check_wf in Hp.
  eapply interp_total_guarded; eauto. intros x [].
Qed.
