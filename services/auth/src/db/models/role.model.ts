import { Model } from 'objection';
import type { RoleName } from '@gatehouse/tokens';

export class RoleModel extends Model {
  static override tableName = 'roles';

  declare id: number;
  declare name: RoleName;
}
