import { z } from 'zod';

/** The tutorial's four boards answer plain text, exactly these words. */
export const publicBoardText = z.literal('Public Content.');
export const userBoardText = z.literal('User Content.');
export const moderatorBoardText = z.literal('Moderator Content.');
export const adminBoardText = z.literal('Admin Content.');
