(** * M-Call by substitution: the renamed body under σ is the body in a frame.

    LANGUAGE.md §3 states M-Call as [σ ⊨ v : body[ȳ := x̄]] with the locals
    renamed apart; the interpreters ([Interp.v], [pypm/lang/match.py]) run
    the body in a frame. [fastmatch.py] inlines non-recursive calls by
    substitution ([_inline], [_rename]): parameters become the arguments, every
    other name [z] of the body becomes [z%T] (T the inlining's tag), each [∃x]
    gets a name [x%T.c] of its own (c counts the ∃s, from 1) and the [∃] node
    is dropped. [rename] is [_rename]; the made-up names are [gname T c z]
    ([c = 0] for a name the body uses without binding), any injective naming
    in which no argument and no name that σ binds is a made-up one (in Python:
    they contain [%], which no pattern variable can).

    [inline_call_correct]: for a definition with distinct parameters, called
    with distinct arguments (what [_inline] checks), the renamed body under σ
    returns the results of the call, in the same order, with the same regions,
    each binding the same values to every name that is not a made-up one
    (the frame drops the locals; [fastmatch.py] drops the made-up names at the
    top). It needs no more fuel than the call. *)

From Coq Require Import String ZArith List Bool Arith Lia.
From PyPM Require Import Syntax Semantics Interp InterpProof Regions.
Import ListNotations.

Section Rename.
Variable gname : nat -> nat -> string -> string.
Hypothesis gname_inj : forall t c x t' c' x',
  gname t c x = gname t' c' x' -> t = t' /\ c = c' /\ x = x'.
Variable T : nat.  (** the tag of this inlining *)

Definition upd (rho : string -> string) (x y : string) : string -> string :=
  fun z => if String.eqb z x then y else rho z.

Definition rename_atom (rho : string -> string) (a : atom) : atom :=
  match a with AVar x => AVar (rho x) | ALit l => ALit l end.

Fixpoint rename_guard (rho : string -> string) (g : guard) : guard :=
  match g with
  | GTrue => GTrue
  | GFalse => GFalse
  | GEq a b => GEq (rename_atom rho a) (rename_atom rho b)
  | GNeq a b => GNeq (rename_atom rho a) (rename_atom rho b)
  | GNot g => GNot (rename_guard rho g)
  | GAnd g h => GAnd (rename_guard rho g) (rename_guard rho h)
  | GOr g h => GOr (rename_guard rho g) (rename_guard rho h)
  end.

(** [_rename]: the pattern and the last ∃ counter used. *)
Fixpoint rename (rho : string -> string) (c : nat) (p : pat) {struct p} : pat * nat :=
  let fix go (c : nat) (ps : list pat) : list pat * nat :=
      match ps with
      | [] => ([], c)
      | q :: qs => let a := rename rho c q in let b := go (snd a) qs in (fst a :: fst b, snd b)
      end in
  match p with
  | PVar x => (PVar (rho x), c)
  | POp f ps => let r := go c ps in (POp f (fst r), snd r)
  | POpVar x ps => let r := go c ps in (POpVar (rho x) (fst r), snd r)
  | PAlt p1 p2 =>
      let a := rename rho c p1 in let b := rename rho (snd a) p2 in (PAlt (fst a) (fst b), snd b)
  | PExists x p => rename (upd rho x (gname T (S c) x)) (S c) p
  | PCall P xs => (PCall P (map rho xs), c)
  | PGuard p g => let a := rename rho c p in (PGuard (fst a) (rename_guard rho g), snd a)
  | PThen p x q =>
      let a := rename rho c p in let b := rename rho (snd a) q in
      (PThen (fst a) (rho x) (fst b), snd b)
  | _ => (p, c)
  end.

Definition rename_list (rho : string -> string) :=
  fix go (c : nat) (ps : list pat) : list pat * nat :=
      match ps with
      | [] => ([], c)
      | q :: qs => let a := rename rho c q in let b := go (snd a) qs in (fst a :: fst b, snd b)
      end.

(** The environment of [_inline]: [dict(zip(params, xs))], other names tagged. *)
Fixpoint assoc (l : list (string * string)) (z : string) : option string :=
  match l with
  | [] => None
  | (a, b) :: l' => if String.eqb z a then Some b else assoc l' z
  end.

Definition call_env (xs ys : list string) (z : string) : string :=
  match assoc (combine ys xs) z with Some x => x | None => gname T 0 z end.

Definition inline_body (d : definition) (xs : list string) : pat :=
  fst (rename (call_env xs (def_params d)) 0 (def_body d)).

(** ** Invariants *)

Definition inv (rho : string -> string) (c : nat) (tau s : subst) : Prop :=
  (forall z, lookup tau z = lookup s (rho z)) /\
  (forall c' w, c < c' -> lookup s (gname T c' w) = None).

Definition names_ok (rho : string -> string) (c : nat) : Prop :=
  (forall z z', rho z = rho z' -> z = z') /\
  (forall z c' w, c < c' -> rho z <> gname T c' w).

Definition keeps (rho : string -> string) (c c' : nat) (s s1 : subst) : Prop :=
  forall w, (forall z, rho z <> w) -> (forall c'' u, c < c'' -> c'' <= c' -> w <> gname T c'' u) ->
  lookup s1 w = lookup s w.

Definition rel (rho : string -> string) (c c' : nat) (s : subst) (a b : res) : Prop :=
  snd a = snd b /\ inv rho c' (fst a) (fst b) /\ keeps rho c c' s (fst b).

Lemma rename_op : forall rho c f ps,
  rename rho c (POp f ps) = (POp f (fst (rename_list rho c ps)), snd (rename_list rho c ps)).
Proof. reflexivity. Qed.

Lemma rename_opvar : forall rho c x ps,
  rename rho c (POpVar x ps) = (POpVar (rho x) (fst (rename_list rho c ps)), snd (rename_list rho c ps)).
Proof. reflexivity. Qed.

Lemma rename_mono : forall p rho c, c <= snd (rename rho c p).
Proof.
  induction p as [| x | l | f ps IH | x ps IH | p1 p2 IH1 IH2 | x p IH | P xs | p g IH
                  | p x q IH IHq | ] using pat_ind'; intros rho c; simpl; auto.
  - change (c <= snd (rename_list rho c ps)). revert c.
    induction IH as [| q qs Hq _ IHqs]; intros c; simpl; auto.
    specialize (Hq rho c). specialize (IHqs (snd (rename rho c q))). lia.
  - change (c <= snd (rename_list rho c ps)). revert c.
    induction IH as [| q qs Hq _ IHqs]; intros c; simpl; auto.
    specialize (Hq rho c). specialize (IHqs (snd (rename rho c q))). lia.
  - specialize (IH1 rho c). specialize (IH2 rho (snd (rename rho c p1))). lia.
  - specialize (IH (upd rho x (gname T (S c) x)) (S c)). lia.
  - specialize (IH rho c). specialize (IHq rho (snd (rename rho c p))). lia.
Qed.

Lemma rename_list_mono : forall ps rho c, c <= snd (rename_list rho c ps).
Proof.
  induction ps as [| q qs IH]; intros rho c; simpl; auto.
  specialize (rename_mono q rho c). specialize (IH rho (snd (rename rho c q))). lia.
Qed.

Lemma rename_list_length : forall ps rho c, length (fst (rename_list rho c ps)) = length ps.
Proof. induction ps; simpl; auto. Qed.

Lemma inv_weaken : forall rho c c' tau s, inv rho c tau s -> c <= c' -> inv rho c' tau s.
Proof. intros rho c c' tau s [H1 H2] Hc. split; auto. intros; apply H2; lia. Qed.

Lemma names_ok_weaken : forall rho c c', names_ok rho c -> c <= c' -> names_ok rho c'.
Proof. intros rho c c' [H1 H2] Hc. split; auto. intros; apply H2; lia. Qed.

Lemma keeps_refl : forall rho c c' s, keeps rho c c' s s.
Proof. unfold keeps; auto. Qed.

Lemma keeps_trans : forall rho c c1 c' s s1 s2,
  c <= c1 -> c1 <= c' -> keeps rho c c1 s s1 -> keeps rho c1 c' s1 s2 -> keeps rho c c' s s2.
Proof.
  unfold keeps; intros rho c c1 c' s s1 s2 Hc Hc' H1 H2 w Hw Hg.
  rewrite H2, H1; auto; intros c'' u ? ?; apply Hg; lia.
Qed.

Lemma keeps_widen : forall rho c c1 c' c2 s s1,
  c <= c1 -> c' <= c2 -> keeps rho c1 c' s s1 -> keeps rho c c2 s s1.
Proof.
  unfold keeps; intros rho c c1 c' c2 s s1 Hc Hc' H w Hw Hg.
  apply H; auto; intros c'' u ? ?; apply Hg; lia.
Qed.

Lemma rel_widen : forall rho c c1 c' s a b,
  c <= c1 -> rel rho c1 c' s a b -> rel rho c c' s a b.
Proof.
  intros rho c c1 c' s a b Hc (H1 & H2 & H3). split; [auto | split; [auto |]].
  eapply keeps_widen; [exact Hc | | exact H3]; lia.
Qed.

Lemma rel_refl : forall rho c tau s g, inv rho c tau s -> rel rho c c s (tau, g) (s, g).
Proof. intros. split; [reflexivity | split; [assumption | apply keeps_refl]]. Qed.

Lemma rel_trans : forall rho c c1 c' s s1 a b,
  c <= c1 -> c1 <= c' -> keeps rho c c1 s s1 -> rel rho c1 c' s1 a b -> rel rho c c' s a b.
Proof.
  intros rho c c1 c' s s1 a b Hc Hc' Hk (H1 & H2 & H3).
  split; [auto | split; [auto | eapply keeps_trans; eauto]].
Qed.

Lemma Forall2_app' : forall {X Y} (R : X -> Y -> Prop) l1 l2 m1 m2,
  Forall2 R l1 m1 -> Forall2 R l2 m2 -> Forall2 R (l1 ++ l2) (m1 ++ m2).
Proof. intros; apply Forall2_app; auto. Qed.

Lemma Forall2_impl' : forall {X Y} (R R' : X -> Y -> Prop) l m,
  (forall a b, R a b -> R' a b) -> Forall2 R l m -> Forall2 R' l m.
Proof. intros X Y R R' l m H H2. induction H2; constructor; auto. Qed.

Lemma rflat_sim : forall (R R' : res -> res -> Prop) f f' l l' r,
  Forall2 R l l' ->
  (forall a a', R a a' -> forall ra, f a = ROk ra ->
     exists ra', f' a' = ROk ra' /\ Forall2 R' ra ra') ->
  rflat f l = ROk r -> exists r', rflat f' l' = ROk r' /\ Forall2 R' r r'.
Proof.
  intros R R' f f' l l' r H2. revert r. induction H2 as [| a a' l l' Ha Hl IH]; intros r Hf H.
  - simpl in H. inversion H; subst. exists []; simpl; auto.
  - simpl in H. destruct (f a) as [| ra] eqn:Ea; try discriminate.
    destruct (rflat f l) as [| rl] eqn:El; try discriminate. inversion H; subst.
    destruct (Hf a a' Ha ra Ea) as (ra' & Ea' & Hra).
    destruct (IH rl Hf eq_refl) as (rl' & El' & Hrl).
    exists (ra' ++ rl'). simpl. rewrite Ea', El'. split; auto. apply Forall2_app; auto.
Qed.

(** ** The steps that bind *)

Lemma bind_var_sim : forall rho c tau s x v,
  names_ok rho c -> inv rho c tau s ->
  match bind_var tau x v, bind_var s (rho x) v with
  | None, None => True
  | Some tau1, Some s1 => inv rho c tau1 s1 /\ forall w, w <> rho x -> lookup s1 w = lookup s w
  | _, _ => False
  end.
Proof.
  intros rho c tau s x v [Hinj Hg] [H1 H2]. unfold bind_var. rewrite H1.
  destruct (lookup s (rho x)) as [w|].
  - destruct (value_eqb w v); auto. split; auto. split; auto.
  - split; [split |].
    + intros z. rewrite !lookup_update. destruct (String.eqb z x) eqn:E.
      * apply String.eqb_eq in E; subst. rewrite String.eqb_refl; auto.
      * destruct (String.eqb (rho z) (rho x)) eqn:E'; auto.
        apply String.eqb_eq in E'. apply Hinj in E'. subst. rewrite String.eqb_refl in E.
        discriminate.
    + intros c' w Hc. rewrite lookup_update. destruct (String.eqb (gname T c' w) (rho x)) eqn:E.
      * apply String.eqb_eq in E. exfalso; eapply Hg; eauto.
      * auto.
    + intros w Hw. apply lookup_update_neq; auto.
Qed.

Lemma frame_in_sim : forall rho c tau s zs ys,
  inv rho c tau s -> frame_in tau zs ys = frame_in s (map rho zs) ys.
Proof.
  intros rho c tau s zs ys [H1 _]. revert ys.
  induction zs as [| z zs IH]; intros [| y ys]; simpl; auto.
  rewrite H1, IH. reflexivity.
Qed.

Lemma copy_back_sim : forall rho c t zs ys tau s,
  names_ok rho c -> inv rho c tau s ->
  match copy_back t zs ys tau, copy_back t (map rho zs) ys s with
  | None, None => True
  | Some tau1, Some s1 => inv rho c tau1 s1 /\
      forall w, (forall z, rho z <> w) -> lookup s1 w = lookup s w
  | _, _ => False
  end.
Proof.
  intros rho c t zs. induction zs as [| z zs IH]; intros [| y ys] tau s Hn Hi; simpl; auto.
  destruct (lookup t y) as [w|]; [| apply IH; auto].
  pose proof (bind_var_sim rho c tau s z w Hn Hi) as Hb.
  destruct (bind_var tau z w) as [tau1|], (bind_var s (rho z) w) as [s1|]; try contradiction; auto.
  destruct Hb as [Hi1 Hk1].
  specialize (IH ys tau1 s1 Hn Hi1).
  destruct (copy_back t zs ys tau1), (copy_back t (map rho zs) ys s1); try contradiction; auto.
  destruct IH as [Hi2 Hk2]. split; auto. intros w' Hw'. rewrite Hk2, Hk1; auto.
Qed.

Lemma guard_sim : forall rho tau s g,
  (forall z, lookup tau z = lookup s (rho z)) ->
  eval_guard s (rename_guard rho g) = eval_guard tau g.
Proof.
  intros rho tau s g H. unfold eval_guard.
  assert (Ha : forall a, eval_atom s (rename_atom rho a) = eval_atom tau a)
    by (intros [x | l]; simpl; auto).
  assert (Hf : gfv (rename_guard rho g) = map rho (gfv g)).
  { induction g; simpl; rewrite ?map_app; try congruence;
      repeat match goal with a : atom |- _ => destruct a end; reflexivity. }
  assert (Hv : geval s (rename_guard rho g) = geval tau g).
  { clear Hf. induction g; simpl; try congruence; unfold eq_atoms; rewrite ?Ha; reflexivity. }
  rewrite Hf, Hv. f_equal. clear Hf Hv.
  induction (gfv g) as [| y ys IH]; simpl; auto. unfold bound at 1 3. rewrite H, IH; auto.
Qed.

Lemma Forall2_filter : forall (R : res -> res -> Prop) (f f' : res -> bool) l l',
  Forall2 R l l' -> (forall a a', R a a' -> f a = f' a') ->
  Forall2 R (filter f l) (filter f' l').
Proof.
  intros R f f' l l' H Hf. induction H; simpl; auto.
  rewrite (Hf _ _ H). destruct (f' y); auto.
Qed.

(** ** The simulation *)

Section Sim.
Variable D : program.

Definition sim_at (n : nat) : Prop :=
  forall p v tau r, interp_r D n p v tau = ROk r ->
  forall rho c s m, n <= m -> names_ok rho c -> inv rho c tau s ->
  exists r', interp_r D m (fst (rename rho c p)) v s = ROk r' /\
             Forall2 (rel rho c (snd (rename rho c p)) s) r r'.

Lemma rargs_sim : forall n m, n <= m -> sim_at n ->
  forall ps vs tau g r rho c s,
  names_ok rho c -> inv rho c tau s ->
  rargs (interp_r D n) ps vs tau g = ROk r ->
  exists r', rargs (interp_r D m) (fst (rename_list rho c ps)) vs s g = ROk r' /\
             Forall2 (rel rho c (snd (rename_list rho c ps)) s) r r'.
Proof.
  intros n m Hm Hsim. induction ps as [| q ps IH];
    intros [| v vs] tau g r rho c s Hn Hi H; simpl in H |- *.
  - inversion H; subst. eexists; split; [reflexivity |].
    constructor; [apply rel_refl; auto | constructor].
  - inversion H; subst. eexists; split; [reflexivity |].
    constructor; [apply rel_refl; auto | constructor].
  - inversion H; subst. eexists; split; [reflexivity | constructor].
  - unfold rbind in H |- *. destruct (interp_r D n q v tau) as [| r1] eqn:E1; try discriminate.
    destruct (Hsim q v tau r1 E1 rho c s m Hm Hn Hi) as (r1' & E1' & H1). rewrite E1'.
    set (c1 := snd (rename rho c q)) in *.
    assert (Hc1 : c <= c1) by apply rename_mono.
    assert (Hc2 : c1 <= snd (rename_list rho c1 ps)) by apply rename_list_mono.
    eapply rflat_sim; [exact H1 | | exact H].
    intros [tau1 g1] [s1 g1'] (Hg & Hi1 & Hk1) ra Ha. simpl in Hg, Hi1, Hk1 |- *. subst g1'.
    destruct (IH vs tau1 (g ++ g1) ra rho c1 s1 (names_ok_weaken _ _ _ Hn Hc1) Hi1 Ha)
      as (ra' & Ea' & Hra).
    exists ra'. split; auto. eapply Forall2_impl'; [| exact Hra].
    intros a b Hab. eapply rel_trans; eauto.
Qed.

Lemma rename_sim_all : forall n, sim_at n.
Proof.
  induction n as [| n IH]; intros p v tau r H rho c s m Hm Hn Hi; [discriminate |].
  destruct m as [| m]; [lia |]. assert (Hm' : n <= m) by lia.
  assert (Hn' := Hn). destruct Hn' as [Hinj Hgn]. assert (Hi' := Hi). destruct Hi' as [Hi1 Hi2].
  destruct p; simpl in H; [try rewrite rename_op; try rewrite rename_opvar; cbn [fst snd interp_r rename] ..].
  - (* M-Wild *)
    inversion H; subst. eexists; split; [reflexivity |].
    constructor; [apply rel_refl; auto | constructor].
  - (* M-Var *)
    pose proof (bind_var_sim rho c tau s x v Hn Hi) as Hb.
    destruct (bind_var tau x v) as [tau1|], (bind_var s (rho x) v) as [s1|];
      try contradiction; inversion H; subst; simpl.
    + destruct Hb as [Hb1 Hb2]. eexists; split; [reflexivity |].
      constructor; [| constructor]. split; [reflexivity | split; [exact Hb1 |]]. simpl.
      intros w Hw _. apply Hb2. intro E; apply (Hw x); auto.
    + eexists; split; [reflexivity | constructor].
  - (* M-Lit *)
    destruct (value_eqb v (VLit l)); inversion H; subst; eexists; split; try reflexivity;
      repeat constructor; auto; apply rel_refl; auto.
  - (* M-Op *)
    destruct v as [g vs | l]; [| inversion H; subst; eexists; split; [reflexivity | constructor]].
    rewrite rename_list_length.
    destruct (String.eqb f g && (length ps <=? length vs));
      [| inversion H; subst; eexists; split; [reflexivity | constructor]].
    eapply rargs_sim; eauto.
  - (* M-OpVar *)
    destruct v as [g vs | l]; [| inversion H; subst; eexists; split; [reflexivity | constructor]].
    rewrite rename_list_length.
    destruct (length ps <=? length vs);
      [| inversion H; subst; eexists; split; [reflexivity | constructor]].
    pose proof (bind_var_sim rho c tau s x (VLit (LStr g)) Hn Hi) as Hb.
    destruct (bind_var tau x (VLit (LStr g))) as [tau1|], (bind_var s (rho x) (VLit (LStr g))) as [s1|];
      try contradiction; [| inversion H; subst; eexists; split; [reflexivity | constructor]].
    destruct Hb as [Hb1 Hb2].
    destruct (rargs_sim n m Hm' IH ps vs tau1 [VTerm g vs] r rho c s1 Hn Hb1 H) as (r' & E' & Hr).
    exists r'. split; auto. eapply Forall2_impl'; [| exact Hr].
    intros a b (Ha1 & Ha2 & Ha3). split; [auto | split; [auto |]].
    intros w Hw Hg. rewrite Ha3, Hb2; auto.
  - (* M-AltL, M-AltR *)
    unfold rapp in H |- *.
    destruct (interp_r D n p1 v tau) as [| r1] eqn:E1; try discriminate.
    destruct (interp_r D n p2 v tau) as [| r2] eqn:E2; try discriminate.
    inversion H; subst.
    set (c1 := snd (rename rho c p1)).
    assert (Hc1 : c <= c1) by apply rename_mono.
    assert (Hc2 : c1 <= snd (rename rho c1 p2)) by apply rename_mono.
    destruct (IH p1 v tau r1 E1 rho c s m Hm' Hn Hi) as (r1' & E1' & H1).
    destruct (IH p2 v tau r2 E2 rho c1 s m Hm' (names_ok_weaken _ _ _ Hn Hc1)
                (inv_weaken _ _ _ _ _ Hi Hc1)) as (r2' & E2' & H2).
    fold c1 in E1'. rewrite E1', E2'. eexists; split; [reflexivity |]. apply Forall2_app.
    + eapply Forall2_impl'; [| exact H1]. intros a b (Ha1 & Ha2 & Ha3).
      split; [auto | split; [eapply inv_weaken; [exact Ha2 | lia] |]].
      eapply keeps_widen; [| | exact Ha3]; lia.
    + eapply Forall2_impl'; [| exact H2]. intros a b Hab. eapply rel_widen; eauto.
  - (* M-Exists *)
    unfold rmap in H. destruct (interp_r D n p v (remove tau x)) as [| r1] eqn:E; try discriminate.
    inversion H; subst.
    set (y := gname T (S c) x). set (rho' := upd rho x y).
    assert (Hn1 : names_ok rho' (S c)).
    { split.
      - intros z z'. unfold rho', upd.
        destruct (String.eqb z x) eqn:Ez, (String.eqb z' x) eqn:Ez'.
        + apply String.eqb_eq in Ez, Ez'; congruence.
        + intros E0. exfalso. apply (Hgn z' (S c) x); [lia | symmetry; exact E0].
        + intros E0. exfalso. apply (Hgn z (S c) x); [lia | exact E0].
        + apply Hinj.
      - intros z c' w Hc. unfold rho', upd. destruct (String.eqb z x).
        + intros E0. apply gname_inj in E0. lia.
        + apply Hgn; lia. }
    assert (Hi1' : inv rho' (S c) (remove tau x) s).
    { split.
      - intros z. unfold rho', upd. rewrite lookup_remove. destruct (String.eqb z x).
        + symmetry. apply Hi2. lia.
        + apply Hi1.
      - intros; apply Hi2; lia. }
    destruct (IH p v (remove tau x) r1 E rho' (S c) s (S m) ltac:(lia) Hn1 Hi1')
      as (r1' & E1' & H1).
    assert (Hc : S c <= snd (rename rho' (S c) p)) by apply rename_mono.
    (* the renamed body runs at one more unit of fuel than the original's *)
    exists r1'. split; [exact E1' |].
    clear E1' H E. induction H1 as [| a b r1 r1' (Ha1 & Ha2 & Ha3) _ IHr]; simpl; constructor; auto.
    destruct Ha2 as [Hz Hg']. destruct a as [tau1 g1], b as [s1 g2]. simpl in *.
    assert (Hk : keeps rho c (snd (rename rho' (S c) p)) s s1).
    { intros w Hw Hg. apply Ha3.
      - intros z. unfold rho', upd. destruct (String.eqb z x); auto.
        intros E0. apply (Hg (S c) x); [lia | exact Hc | symmetry; exact E0].
      - intros c'' u ? ?. apply Hg; lia. }
    split; [auto | split; [split |]]; auto.
    intros z; simpl. rewrite lookup_restore. destruct (String.eqb z x) eqn:Ez.
    + apply String.eqb_eq in Ez; subst z. rewrite Ha3; auto.
      * intros z. unfold rho', upd. destruct (String.eqb z x) eqn:Ez.
        -- intros E0. apply (Hgn x (S c) x); [lia | symmetry; exact E0].
        -- intros E0. apply Hinj in E0. subst z. rewrite String.eqb_refl in Ez. discriminate.
      * intros c'' u ? ?. apply Hgn; lia.
    + rewrite Hz. unfold rho', upd. rewrite Ez. reflexivity.
  - (* M-Call: both sides call, in a frame *)
    destruct (lookup_def D P) as [d|] eqn:Ed;
      [| inversion H; subst; eexists; split; [reflexivity | constructor]].
    rewrite map_length.
    destruct (length xs =? length (def_params d));
      [| inversion H; subst; eexists; split; [reflexivity | constructor]].
    unfold rmap in H |- *. rewrite <- (frame_in_sim rho c tau s xs (def_params d) Hi).
    destruct (interp_r D n (def_body d) v (frame_in tau xs (def_params d))) as [| r1] eqn:E;
      try discriminate.
    rewrite (interp_r_fuel_mono D n m _ _ _ _ Hm' E).
    inversion H; subst. eexists; split; [reflexivity |].
    clear E H. induction r1 as [| [t g] r1 IHr]; simpl; [constructor |].
    pose proof (copy_back_sim rho c t xs (def_params d) tau s Hn Hi) as Hc.
    destruct (copy_back t xs (def_params d) tau), (copy_back t (map rho xs) (def_params d) s);
      try contradiction; simpl; auto.
    destruct Hc as [Hc1 Hc2]. constructor; auto. split; [reflexivity | split; [exact Hc1 |]].
    intros w Hw _. auto.
  - (* M-Guard *)
    unfold rmap in H |- *. destruct (interp_r D n p v tau) as [| r1] eqn:E; try discriminate.
    inversion H; subst.
    destruct (IH p v tau r1 E rho c s m Hm' Hn Hi) as (r' & E' & H1). rewrite E'.
    eexists; split; [reflexivity |]. apply Forall2_filter; auto.
    intros a b (_ & [Hz _] & _). symmetry. apply guard_sim; auto.
  - (* M-Then *)
    unfold rbind in H |- *. destruct (interp_r D n p1 v tau) as [| r1] eqn:E1; try discriminate.
    destruct (IH p1 v tau r1 E1 rho c s m Hm' Hn Hi) as (r1' & E1' & H1). rewrite E1'.
    set (c1 := snd (rename rho c p1)) in *.
    assert (Hc1 : c <= c1) by apply rename_mono.
    assert (Hc2 : c1 <= snd (rename rho c1 p2)) by apply rename_mono.
    eapply rflat_sim; [exact H1 | | exact H].
    intros [tau1 g1] [s1 g1'] (Hg & Hi3 & Hk1) ra Ha. simpl in Hg, Hi3, Hk1 |- *. subst g1'.
    simpl in Ha. destruct Hi3 as [Hz1 Hz2]. rewrite <- Hz1.
    destruct (lookup tau1 x) as [w|];
      [| inversion Ha; subst; eexists; split; [reflexivity | constructor]].
    unfold rpre, rmap in Ha |- *. destruct (interp_r D n p2 w tau1) as [| r2] eqn:E2;
      try discriminate.
    inversion Ha; subst.
    destruct (IH p2 w tau1 r2 E2 rho c1 s1 m Hm' (names_ok_weaken _ _ _ Hn Hc1) (conj Hz1 Hz2))
      as (r2' & E2' & H2).
    rewrite E2'. eexists; split; [reflexivity |].
    clear E2' E2 Ha. induction H2 as [| a b l l' (Hb1 & Hb2 & Hb3) _ IHl]; simpl; constructor; auto.
    split; [cbn [fst snd]; f_equal; exact Hb1 | split; [exact Hb2 |]].
    cbn [fst]. eapply keeps_trans; eauto.
  - (* no rule for ⊥ *)
    inversion H; subst. eexists; split; [reflexivity | constructor].
Qed.


(** ** The call, inlined *)

Lemma interp_r_le : forall n p v s r a,
  interp_r D n p v s = ROk r -> In a r -> subst_le s (fst a).
Proof.
  intros n p v s r a H Hin. pose proof (interp_r_erase D n p v s) as E. rewrite H in E.
  simpl in E. symmetry in E. eapply (interp_sound D n p v s (map fst r) (fst a) E).
  apply in_map; auto.
Qed.

Lemma frame_in_param : forall s xs ys x y,
  NoDup ys -> In (x, y) (combine xs ys) -> lookup (frame_in s xs ys) y = lookup s x.
Proof.
  induction xs as [| x0 xs IH]; intros [| y0 ys] x y Hnd Hin; simpl in *; try contradiction.
  inversion Hnd; subst. destruct Hin as [E | Hin].
  - inversion E; subst. destruct (lookup s x) as [w|] eqn:Ex.
    + apply lookup_update_eq.
    + destruct (lookup (frame_in s xs ys) y) as [w|] eqn:Ey; auto.
      apply frame_in_lookup in Ey as (x' & Hin' & _). apply in_combine_r in Hin'. contradiction.
  - assert (y <> y0) by (intro; subst; apply in_combine_r in Hin; contradiction).
    destruct (lookup s x0); [rewrite lookup_update_neq; auto |]; apply IH; auto.
Qed.

Lemma assoc_combine_in : forall xs ys x y,
  NoDup ys -> In (x, y) (combine xs ys) -> assoc (combine ys xs) y = Some x.
Proof.
  induction xs as [| x0 xs IH]; intros [| y0 ys] x y Hnd Hin; simpl in *; try contradiction.
  inversion Hnd; subst. destruct Hin as [E | Hin].
  - inversion E; subst. rewrite String.eqb_refl; auto.
  - assert (y <> y0) by (intro; subst; apply in_combine_r in Hin; contradiction).
    apply String.eqb_neq in H. rewrite H. auto.
Qed.

Lemma assoc_combine_some : forall xs ys x y,
  assoc (combine ys xs) y = Some x -> In (x, y) (combine xs ys).
Proof.
  induction xs as [| x0 xs IH]; intros [| y0 ys] x y H; simpl in *; try discriminate.
  destruct (String.eqb y y0) eqn:E.
  - apply String.eqb_eq in E; inversion H; subst; auto.
  - right; auto.
Qed.

Lemma assoc_combine_none : forall xs ys y,
  length xs = length ys -> assoc (combine ys xs) y = None -> ~ In y ys.
Proof.
  induction xs as [| x0 xs IH]; intros [| y0 ys] y Hl H; simpl in *; try discriminate; auto.
  injection Hl as Hl. destruct (String.eqb y y0) eqn:E; try discriminate.
  apply String.eqb_neq in E. intros [E' | Hin]; [congruence | eapply IH; eauto].
Qed.

Lemma in_combine_swap : forall (xs ys : list string) x y,
  In (x, y) (combine xs ys) -> In (y, x) (combine ys xs).
Proof.
  induction xs as [| x0 xs IH]; intros [| y0 ys] x y H; simpl in *; try contradiction.
  destruct H as [E | H]; [inversion E; subst; auto | right; auto].
Qed.

Lemma in_combine_exists : forall (xs ys : list string) x,
  length xs = length ys -> In x xs -> exists y, In (x, y) (combine xs ys).
Proof.
  induction xs as [| x0 xs IH]; intros [| y0 ys] x Hl H; simpl in *; try discriminate;
    try contradiction.
  injection Hl as Hl. destruct H as [<- | H]; [eauto |].
  destruct (IH ys x Hl H) as (y & Hy); eauto.
Qed.

Lemma copy_back_ok : forall t xs ys s,
  NoDup xs ->
  (forall x y w, In (x, y) (combine xs ys) -> lookup s x = Some w -> lookup t y = Some w) ->
  exists s1, copy_back t xs ys s = Some s1 /\
    (forall x y, In (x, y) (combine xs ys) -> lookup s1 x = lookup t y) /\
    (forall w, ~ In w xs -> lookup s1 w = lookup s w).
Proof.
  induction xs as [| x xs IH]; intros [| y ys] s Hnd Hc; simpl.
  - exists s. split; [reflexivity | split; [intros x y [] | auto]].
  - exists s. split; [reflexivity | split; [intros x' y' [] | auto]].
  - exists s. split; [reflexivity | split; [intros x' y' [] | auto]].
  - inversion Hnd; subst.
    assert (Hrest : forall s', (forall w, w <> x -> lookup s' w = lookup s w) ->
              forall x' y' w, In (x', y') (combine xs ys) -> lookup s' x' = Some w ->
              lookup t y' = Some w).
    { intros s' Hs' x' y' w Hin Hw. rewrite Hs' in Hw.
      - eapply Hc; [right; exact Hin | exact Hw].
      - intro; subst. apply in_combine_l in Hin. contradiction. }
    destruct (lookup t y) as [w|] eqn:Ey.
    + unfold bind_var. destruct (lookup s x) as [w'|] eqn:Ex.
      * assert (w' = w) by (pose proof (Hc x y w' (or_introl eq_refl) Ex); congruence). subst w'.
        rewrite value_eqb_refl.
        destruct (IH ys s H2 (Hrest s (fun _ _ => eq_refl))) as (s1 & E1 & K1 & K3).
        exists s1. split; [exact E1 | split].
        -- intros x' y' [E | Hin]; [inversion E; subst; rewrite K3; [congruence | auto] | auto].
        -- intros w0 Hw0. apply K3. intro; apply Hw0; right; auto.
      * destruct (IH ys (update s x w) H2 (Hrest _ (fun w0 Hw0 => lookup_update_neq s x w w0 Hw0)))
          as (s1 & E1 & K1 & K3).
        exists s1. split; [exact E1 | split].
        -- intros x' y' [E | Hin]; [inversion E; subst | auto].
           rewrite K3; auto. rewrite lookup_update_eq; auto.
        -- intros w0 Hw0. rewrite K3.
           ++ apply lookup_update_neq. intro; apply Hw0; left; auto.
           ++ intro; apply Hw0; right; auto.
    + destruct (IH ys s H2 (Hrest s (fun _ _ => eq_refl))) as (s1 & E1 & K1 & K3).
      exists s1. split; [exact E1 | split].
      * intros x' y' [E | Hin]; [inversion E; subst | auto].
        rewrite K3; auto. rewrite Ey. destruct (lookup s x') as [w|] eqn:Ex; auto.
        pose proof (Hc x' y' w (or_introl eq_refl) Ex). congruence.
      * intros w0 Hw0. apply K3. intro; apply Hw0; right; auto.
Qed.

(** The renamed body under σ gives the results of the call: same order,
    same regions, same bindings of every name this inlining did not make up. *)
Theorem inline_call_correct : forall P d xs v s n r,
  lookup_def D P = Some d -> NoDup (def_params d) -> NoDup xs ->
  length xs = length (def_params d) ->
  (forall x c w, In x xs -> x <> gname T c w) ->
  (forall c w, lookup s (gname T c w) = None) ->
  interp_r D (S n) (PCall P xs) v s = ROk r ->
  forall m, n <= m ->
  exists r', interp_r D m (inline_body d xs) v s = ROk r' /\
    Forall2 (fun a b => snd a = snd b /\
               forall z, (forall c w, z <> gname T c w) -> lookup (fst a) z = lookup (fst b) z)
            r r'.
Proof.
  intros P d xs v s n r Hd Hndy Hndx Hl Hxs Hs H m Hm.
  set (ys := def_params d) in *. set (rho := call_env xs ys).
  simpl in H. rewrite Hd in H. fold ys in H. rewrite Hl, Nat.eqb_refl in H. unfold rmap in H.
  destruct (interp_r D n (def_body d) v (frame_in s xs ys)) as [| r1] eqn:E; try discriminate.
  inversion H; subst r. clear H.
  assert (Hn0 : names_ok rho 0).
  { split.
    - intros z z'. unfold rho, call_env.
      destruct (assoc (combine ys xs) z) as [x|] eqn:Ez, (assoc (combine ys xs) z') as [x'|] eqn:Ez'.
      + intros <-. apply assoc_combine_some, in_combine_swap in Ez, Ez'.
        exact (combine_nodup _ _ _ _ _ Hndx Ez Ez').
      + intros E0. exfalso. apply assoc_combine_some, in_combine_l in Ez. eapply Hxs; eauto.
      + intros E0. exfalso. apply assoc_combine_some, in_combine_l in Ez'. eapply Hxs; eauto.
      + intros E0. apply gname_inj in E0. tauto.
    - intros z c' w Hc. unfold rho, call_env.
      destruct (assoc (combine ys xs) z) as [x|] eqn:Ez.
      + apply assoc_combine_some, in_combine_l in Ez. eapply Hxs; eauto.
      + intros E0. apply gname_inj in E0. lia. }
  assert (Hi0 : inv rho 0 (frame_in s xs ys) s).
  { split; [| intros; apply Hs].
    intros z. unfold rho, call_env.
    destruct (assoc (combine ys xs) z) as [x|] eqn:Ez.
    - apply assoc_combine_some in Ez. apply frame_in_param; auto.
    - rewrite Hs. destruct (lookup (frame_in s xs ys) z) as [w|] eqn:Ef; auto.
      apply frame_in_lookup in Ef as (x & Hin & _). apply in_combine_r in Hin.
      exfalso; exact (assoc_combine_none xs ys z Hl Ez Hin). }
  destruct (rename_sim_all n (def_body d) v (frame_in s xs ys) r1 E rho 0 s m Hm Hn0 Hi0)
    as (r' & E' & Hrel).
  exists r'. split; [exact E' |].
  assert (Hle : forall a, In a r1 -> subst_le (frame_in s xs ys) (fst a))
    by (intros; eapply interp_r_le; eauto).
  clear E E'. induction Hrel as [| [t g] [s1 g'] r1 r' (Hg & [Hz _] & Hk) _ IHr]; simpl; auto.
  simpl in Hg, Hz, Hk. subst g'.
  destruct (copy_back_ok t xs ys s Hndx) as (s2 & Ec & Hc1 & Hc2).
  { intros x y w Hin Hw. apply (Hle (t, g) (or_introl eq_refl)). simpl.
    rewrite (frame_in_param s xs ys x y Hndy Hin). exact Hw. }
  rewrite Ec. simpl. constructor.
  - split; auto. intros z Hz0. simpl.
    destruct (in_dec string_dec z xs) as [Hin | Hnin].
    + destruct (in_combine_exists xs ys z Hl Hin) as (y & Hy).
      rewrite (Hc1 z y Hy), Hz. unfold rho, call_env.
      rewrite (assoc_combine_in xs ys z y Hndy Hy). reflexivity.
    + rewrite Hc2, Hk; auto.
      * intros z'. unfold rho, call_env. destruct (assoc (combine ys xs) z') as [x|] eqn:Ez.
        -- apply assoc_combine_some, in_combine_l in Ez. intro; subst; contradiction.
        -- intro E0. apply (Hz0 0 z'). auto.
  - apply IHr. intros a Ha. apply Hle. right; auto.
Qed.

End Sim.
End Rename.
