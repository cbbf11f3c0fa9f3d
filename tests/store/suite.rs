//! The conformance suite's list: every function of `tests/store/*.rs` that
//! states a behaviour both backends must have. A test binary instantiates it
//! by passing its own generators for untimed functions (`async fn(&Store)`)
//! and time-dependent ones (`async fn(&Store, &Time)`).

macro_rules! conformance_suite {
    ($untimed:ident, $timed:ident) => {
        $untimed!(
            // sessions
            a_created_session_loads_with_a_fresh_last_seen,
            an_expired_session_is_gone_for_every_operation,
            rotating_a_session_retires_the_old_token,
            deleting_a_session_ends_it_and_names_its_user,
            a_user_lists_only_their_own_live_sessions,
            revoking_a_session_by_its_listed_id_ends_only_that_session,
            revoking_all_sessions_of_a_user_spares_everyone_else,
            // access tokens
            a_token_is_found_by_id_listed_for_its_user_and_revoked_only_by_them,
            a_tokens_last_use_is_noted_but_never_brings_a_revoked_one_back,
            an_expired_token_is_gone,
            forgetting_a_user_revokes_their_tokens_and_nobody_elses,
            // pending logins
            a_pending_login_can_be_read_until_it_is_taken_once,
            // one-time codes
            a_correct_code_verifies_once,
            a_wrong_code_reports_the_attempts_remaining,
            wrong_code_three_times_voids_the_code,
            a_code_never_issued_or_voided_verifies_as_none,
            issuing_a_new_code_voids_the_previous_one,
            codes_for_different_users_and_purposes_do_not_mix,
            // sliding windows
            a_rate_window_allows_its_limit_then_says_when_to_retry,
            a_rate_check_does_not_count,
            recording_counts_every_event_and_reset_clears_the_window,
            // account lock
            unlocking_lifts_the_lock_and_forgets_the_failures,
            // second-factor answers, counted before they are compared
            each_admitted_answer_counts_until_the_last_one_locks_the_account,
            a_right_answer_takes_its_failure_back_and_lifts_only_its_own_lock,
            password_failures_and_second_factor_answers_share_the_account_window,
            a_cap_refuses_before_anything_is_counted_against_the_account,
            forty_parallel_answers_compare_no_more_than_the_limits_allow,
            // durable per-user state
            two_factor_is_off_until_enabled_and_can_be_switched_off,
            each_backup_code_is_consumed_exactly_once,
            new_backup_codes_void_the_old_ones,
            known_ips_remember_when_they_were_last_seen,
            an_authenticator_secret_waits_for_its_code_then_counts_as_a_second_factor,
            a_totp_step_is_accepted_once_and_never_an_earlier_one,
            fifty_concurrent_uses_of_one_totp_step_succeed_exactly_once,
            passkeys_are_kept_per_user_and_count_as_a_second_factor,
            a_passkey_change_lands_only_on_the_list_it_was_made_from,
            forgetting_a_user_ends_their_sessions_and_removes_their_factors_and_nobody_elses,
            a_ceremony_is_taken_once,
            // audit
            audit_lists_newest_first_per_user_and_globally,
            audit_lists_keep_only_the_newest_entries,
            the_audit_trail_is_searched_a_page_at_a_time_newest_first,
            a_search_that_matches_little_stops_at_its_budget_and_says_where_to_go_on,
            // what an operator looks at
            account_facts_tell_factors_locks_sessions_and_last_login,
            a_noted_ban_is_listed_until_it_is_forgotten,
            // concurrency
            two_hundred_concurrent_verifies_of_one_correct_code_succeed_exactly_once,
            a_thousand_concurrent_hits_on_a_five_per_minute_window_allow_exactly_five,
            a_backup_code_consumed_fifty_times_at_once_succeeds_exactly_once,
            fifty_concurrent_takes_of_one_pending_login_complete_it_once,
        );

        $timed!(
            touching_a_session_slides_its_idle_expiry,
            peeking_at_a_session_does_not_slide_its_idle_expiry,
            a_session_dies_at_its_absolute_expiry_however_active,
            a_pending_login_expires_after_its_ttl,
            an_expired_code_says_expired_then_is_forgotten,
            a_resend_cooldown_refuses_until_it_ends,
            the_window_slides_so_old_hits_stop_counting,
            a_locked_account_stays_locked_until_the_lock_expires,
            known_ips_forget_the_least_recently_seen_beyond_the_cap,
        );
    };
}
